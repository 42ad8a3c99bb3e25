"""Read-model builders: the events of the log, folded into PostgreSQL tables.

One module per table family, each with a `HANDLERS` table from event payload type to
handler. Read models are a pure function of the event log: every value comes from the events
(times are their `occurred_at`), so a rebuild from offset 0 yields identical rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from projections import attempts, definitions, history, instances, signals, steps, workflows
from projections.tables import Batch, Conn, Handler, Table, load, write
from services.domain.protocol.events import EVENT_TYPES, Event, EventPayload

# history first: its table is the idempotence guard for all the others.
MODULES = (history, workflows, instances, steps, attempts, signals, definitions)
_STATE_MODULES = MODULES[1:]

ALL_TABLES: tuple[Table, ...] = tuple(t for m in MODULES for t in m.TABLES)
"""Every table the projector writes (`projector_offsets` aside)."""

ALL_HANDLERS: dict[type[EventPayload], tuple[Handler, ...]] = {
    t: tuple(m.HANDLERS[t] for m in MODULES if t in m.HANDLERS) for t in EVENT_TYPES
}
"""Per event type, every module's handler, in `MODULES` order."""

SKIPPED: dict[type[EventPayload], str] = {}
"""Event types deliberately not projected, with the reason. None today: every event is
at least recorded in `events` (SignalAwaited and SignalWaitCancelled only there: the waiting
step's row shows the wait)."""

_HISTORY_HANDLERS: dict[type[EventPayload], tuple[Handler, ...]] = {
    t: (h,) for t, h in history.HANDLERS.items()
}
_STATE_HANDLERS: dict[type[EventPayload], tuple[Handler, ...]] = {
    t: tuple(m.HANDLERS[t] for m in _STATE_MODULES if t in m.HANDLERS) for t in EVENT_TYPES
}
_STATE_TABLES = tuple(t for m in _STATE_MODULES for t in m.TABLES)


class UnknownEvent(LookupError):
    """An event type no projection knows: the dispatch tables are out of date."""


def _handlers(
    table: dict[type[EventPayload], tuple[Handler, ...]], e: Event
) -> tuple[Handler, ...]:
    try:
        return table[type(e.payload)]
    except KeyError:
        raise UnknownEvent(f"{e.event_id}: no projection for {e.type}") from None


async def apply_batch(conn: Conn, events: Sequence[Event]) -> int:
    """Apply `events`, in order, to the read models; returns how many were new.

    Idempotent: an event already applied (its `events` row exists), or repeated within the
    batch, changes nothing. Must run inside the caller's transaction, which also records
    the consumer position (effect and position commit together).
    """
    unique: dict[tuple[str, int], Event] = {}
    for e in events:
        unique.setdefault((history.aggregate_id(e), e.seq), e)
    if not unique:
        return 0

    guard = Batch()
    for e in unique.values():
        for handler in _handlers(_HISTORY_HANDLERS, e):
            handler(guard, e, e.payload)
    rows = guard.changed()[history.EVENTS]
    inserted = await conn.fetch(history.EVENTS.insert_new_sql(), *history.EVENTS.arrays(rows))
    new = {(r["aggregate_id"], r["seq"]) for r in inserted}
    fresh = [e for k, e in unique.items() if k in new]

    batch = Batch()
    await load(conn, batch, _STATE_TABLES, fresh)
    for e in fresh:
        for handler in _handlers(_STATE_HANDLERS, e):
            handler(batch, e, e.payload)
    await write(conn, batch)
    return len(fresh)


__all__ = ["ALL_HANDLERS", "ALL_TABLES", "MODULES", "SKIPPED", "UnknownEvent", "apply_batch"]
