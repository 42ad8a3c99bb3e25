"""The adapters' branch of Baton's one error root: what the I/O edge raises on purpose (an
undecodable record, a migration that cannot apply, an embedded server that will not start).
Each keeps its builtin base too, so code that catches ValueError or RuntimeError still does."""

from __future__ import annotations

from services.domain.kernel.errors import BatonError


class AdapterError(BatonError):
    """An adapter refused something, or a dependency it manages failed."""
