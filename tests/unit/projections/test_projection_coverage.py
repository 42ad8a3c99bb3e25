"""Every event type is projected (STYLE habit 4): a dispatch entry, or a documented skip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from projections import ALL_HANDLERS, ALL_TABLES, MODULES, SKIPPED, history
from projections.tables import Batch, ts
from services.domain.kernel.statuses import FailureKind, StepStatus
from services.domain.protocol.events import (
    EVENT_TYPES,
    Event,
    EventPayload,
    InstanceFailed,
    StepAttemptFailed,
)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_every_event_type_has_a_projection_or_a_documented_skip(
    event_type: type[EventPayload],
) -> None:
    handlers = ALL_HANDLERS.get(event_type, ())
    if event_type in SKIPPED:
        assert SKIPPED[event_type].strip(), "a skip must say why"
        assert not handlers, "a skipped type must have no handlers"
    else:
        assert handlers, f"no projection handles {event_type.__name__}"


def test_every_event_is_recorded_in_the_history() -> None:
    assert set(history.HANDLERS) == set(EVENT_TYPES)


def test_handler_tables_name_only_known_event_types() -> None:
    for module in MODULES:
        unknown = set(module.HANDLERS) - set(EVENT_TYPES)
        assert not unknown, f"{module.__name__} handles unknown types {unknown}"


def test_tables_are_distinct_and_keyed() -> None:
    names = [t.name for t in ALL_TABLES]
    assert len(names) == len(set(names))
    for table in ALL_TABLES:
        assert set(table.key) <= set(table.column_names), table.name


def test_event_times_are_exact_utc_microseconds() -> None:
    micros = 1_767_225_600_123_457  # floats would round this one
    assert ts(micros) == datetime(2026, 1, 1, 0, 0, 0, 123457, tzinfo=UTC)


def test_history_payload_is_json_with_enum_values_and_lists() -> None:
    failed = InstanceFailed(run=2, reason="r", failed_steps=("a", "b"), killed=False)
    assert history.payload_json(failed) == (
        '{"failed_steps":["a","b"],"killed":false,"reason":"r","run":2}'
    )
    attempt = StepAttemptFailed("s", 1, FailureKind.USER, "m", "", StepStatus.USER_FAILED, None)
    assert '"kind":"USER"' in history.payload_json(attempt)
    assert '"step_status":"USER_FAILED"' in history.payload_json(attempt)


def test_history_handler_writes_one_row_keyed_by_aggregate_and_seq() -> None:
    e = Event("i-1:3", "i-1", "wf", 3, 1_000_000, InstanceFailed(1, "r", (), killed=True))
    batch = Batch()
    for handler in history.HANDLERS.values():
        handler(batch, e, e.payload)
    rows = batch.changed()[history.EVENTS]
    assert len(rows) == 1
    assert (rows[0]["aggregate_id"], rows[0]["seq"], rows[0]["type"]) == (
        "i-1",
        3,
        "InstanceFailed",
    )


def test_a_start_naming_its_definition_keeps_the_text_once_in_definitions() -> None:
    from projections import definitions
    from services.domain.protocol.events import InstanceStarted

    text = '{"id":"wf","steps":[]}'
    batch = Batch()
    for n in (1, 2):  # two instances of one definition, each event resolved by the projector
        p = InstanceStarted(1, text, "{}", "t", None, 0, definition_hash="ab" * 32)
        e = Event(f"wf~{n}:1", f"wf~{n}", "wf", 1, 1_000_000, p)
        assert '"definition":""' in history.payload_json(p)  # the row keeps the hash only
        assert '"definition_hash":"' + "ab" * 32 in history.payload_json(p)
        definitions.HANDLERS[InstanceStarted](batch, e, p)
    assert batch.changed()[definitions.DEFINITIONS] == [{"hash": "ab" * 32, "definition": text}]
    embedded = InstanceStarted(1, text, "{}", "t", None, 0)  # an older event: kept in its row
    assert '"definition":"{' in history.payload_json(embedded)
