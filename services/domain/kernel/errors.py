"""One root for every error Baton raises on purpose, and the domain's branch of it.

`BatonError` is the root (the adapters root theirs, `AdapterError`, in it too); the API maps
each class to its problem+json by class, never by message. Each keeps the builtin base it
had (ValueError, RuntimeError), so code that catches those still does.
"""

from __future__ import annotations


class BatonError(Exception):
    """The root of every error Baton raises on purpose (a bug raises anything else)."""


class DomainError(BatonError):
    """A rule of the domain refused something, or found the log inconsistent."""


class Rejected(DomainError, ValueError):
    """The command can never apply; the reason is recorded with the dead-lettered command."""


class DefinitionError(DomainError, ValueError):
    """A definition or request is invalid; `faults` lists (path, message) pairs."""

    def __init__(self, faults: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in faults))
        self.faults = faults


class ExpressionError(DomainError, ValueError):
    """An expression that cannot be compiled or evaluated; the message says which and why."""


class CorruptLog(DomainError, RuntimeError):
    """An event that cannot follow the state it is applied to: the log itself is wrong."""
