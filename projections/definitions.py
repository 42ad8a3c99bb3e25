"""`definitions`: each definition text that events name by hash, stored once.

On the log, `InstanceStarted` and `InstanceQueued` name their definition by SHA-256 (the text
is in `baton.definitions`; services/adapters/definitions.py), and the projector gets the text
back before projecting. Here the text is kept once per hash, and the `events` row of such an
event keeps the hash and an empty `definition` (history.py), so PostgreSQL holds one copy
per definition, not one per instance. Events that embed their definition keep it in their
row, as before.
"""

from __future__ import annotations

from typing import Any

from projections.tables import Batch, Handler, Table
from services.domain.protocol.events import Event, EventPayload, InstanceQueued, InstanceStarted

DEFINITIONS = Table(
    "definitions",
    columns=(("hash", "text"), ("definition", "text")),
    key=("hash",),
)
TABLES = (DEFINITIONS,)


def _named(b: Batch, e: Event, p: Any) -> None:
    if p.definition_hash and p.definition:
        b.put(DEFINITIONS, {"hash": p.definition_hash, "definition": p.definition})


HANDLERS: dict[type[EventPayload], Handler] = {InstanceStarted: _named, InstanceQueued: _named}
