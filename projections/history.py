"""`events`: the full history of every aggregate, one row per event.

This table is also the projection's idempotence guard: an event whose (aggregate id, seq) row
already exists has been applied, and no other handler sees it again.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from projections.tables import Batch, Handler, Table, ts
from services.domain.protocol.events import EVENT_TYPES, Event, EventPayload

EVENTS = Table(
    "events",
    columns=(
        ("aggregate_id", "text"),
        ("seq", "int4"),
        ("event_id", "text"),
        ("instance_id", "text"),
        ("workflow_id", "text"),
        ("type", "text"),
        ("occurred_at", "timestamptz"),
        ("caused_at", "timestamptz"),
        ("payload", "jsonb"),
    ),
    key=("aggregate_id", "seq"),
)
TABLES = (EVENTS,)


def payload_json(payload: EventPayload) -> str:
    """The payload's fields as a JSON object: enums as their values, tuples as lists. A
    definition the event names by hash is not repeated: its text is in `definitions`."""
    fields = dataclasses.asdict(payload)
    if fields.get("definition_hash"):
        fields["definition"] = ""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def aggregate_id(e: Event) -> str:
    """Workflow ids, instance ids and signal names are different namespaces that could spell
    the same string; the prefixes keep their histories apart."""
    if e.instance_id is not None:
        return e.instance_id
    if e.signal_name is not None:
        return e.key  # signal:<name>
    return f"workflow:{e.workflow_id}"


def history_row(e: Event) -> dict[str, Any]:
    return {
        "aggregate_id": aggregate_id(e),
        "seq": e.seq,
        "event_id": e.event_id,
        "instance_id": e.instance_id,
        "workflow_id": e.workflow_id,
        "type": e.type,
        "occurred_at": ts(e.occurred_at),
        "caused_at": None if e.caused_at is None else ts(e.caused_at),
        "payload": payload_json(e.payload),
    }


def _record(b: Batch, e: Event, p: Any) -> None:
    b.put(EVENTS, history_row(e))


HANDLERS: dict[type[EventPayload], Handler] = dict.fromkeys(EVENT_TYPES, _record)
