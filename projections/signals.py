"""`signals`: every signal received, one row per (name, signal_seq), newest last.

The steps waiting for a signal are shown on their step rows (`steps.signals`); this table is
what arrived, for `GET /signals` and for auditors.
"""

from __future__ import annotations

import json
from typing import Any

from projections.tables import Batch, Handler, Table, ts
from services.domain.protocol.events import Event, EventPayload, SignalReceived

SIGNALS = Table(
    "signals",
    columns=(
        ("signal_name", "text"),
        ("signal_seq", "int8"),
        ("request_id", "text"),
        ("params", "jsonb"),
        ("payload", "jsonb"),
        ("sender", "text"),
        ("woken", "int4"),
        ("received_at", "timestamptz"),
    ),
    key=("signal_name", "signal_seq"),
)
TABLES = (SIGNALS,)


def _received(b: Batch, e: Event, p: SignalReceived) -> None:
    assert e.signal_name is not None, "a signal event names its signal"
    row: dict[str, Any] = {
        "signal_name": e.signal_name,
        "signal_seq": p.signal_seq,
        "request_id": p.request_id,
        "params": p.params,
        "payload": p.payload,
        "sender": p.sender,
        "woken": len(json.loads(p.woken)),
        "received_at": ts(e.occurred_at),
    }
    b.put(SIGNALS, row)


HANDLERS: dict[type[EventPayload], Handler] = {SignalReceived: _received}
