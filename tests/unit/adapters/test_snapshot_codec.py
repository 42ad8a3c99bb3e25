"""Snapshots are a cache of the fold: for random histories of every aggregate (instances with
loops, signal waits and children; workflows with queues, versions, breakpoints and cron;
signals with waits, triggers and request ids), the state restored from a snapshot taken at
any cut point, through the Avro codec, then folded over the rest of the history, equals the
state of the full fold. And what today's schema did not write is refused, never guessed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.adapters.avro import DecodeError
from services.adapters.avro.framing import frame_header, write_frame
from services.adapters.avro.schemas import (
    DEFAULT_SCHEMA_DIR,
    SNAPSHOT_SUBJECT,
    history_files,
    load_schema_file,
    schema_id,
)
from services.adapters.avro.snapshots import (
    STATE_RECORDS,
    Checkpoint,
    DefinitionRecord,
    SnapshotCodec,
    StateRecord,
)
from services.domain.decider import AGGREGATES
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.commands import (
    Command,
    ReportAttemptFailed,
    ReportAttemptSucceeded,
    RestartInstance,
    SendSignal,
    SetWorkflowBreakpoint,
    StartInstance,
    StopInstance,
)
from services.domain.protocol.events import Event
from tests.unit.domain.instance.test_subworkflows import World

CODEC = SnapshotCodec()
PUBLISHED = history_files(DEFAULT_SCHEMA_DIR / "history" / SNAPSHOT_SUBJECT)
HOUR = 3600 * 1_000_000
BY_NAME = {a.name: a for a in AGGREGATES}

CHILD = {
    "id": "child",
    "steps": [{"id": "copy", "type": "shell", "command": "true"}],
}
PARENT = {
    "id": "parent",
    "run_strategy": {"rule": "PARALLEL", "max": 2},
    "params": {"table": "sales"},
    "time_triggers": [{"cron": "0 * * * *"}],
    "steps": [
        {
            "id": "each",
            "type": "foreach",
            "items": ["a", "b", "c"],
            "concurrency": 2,
            "params": {"part": {"type": "string", "expression": "iteration.item"}},
            "steps": [{"id": "work", "type": "shell", "command": "true"}],
            "next": ["wait"],
        },
        {
            "id": "wait",
            "type": "shell",
            "command": "true",
            "signal_dependencies": [{"name": "ready", "match": {"table": "${table}"}}],
            "next": ["sub"],
        },
        {"id": "sub", "type": "subworkflow", "workflow": "child"},
    ],
}
ON_SIGNAL = {
    "id": "on_signal",
    "signal_triggers": [{"name": "ready", "match": {}, "dedup": ["table"]}],
    "params": {"table": "x"},
    "steps": [{"id": "only", "type": "noop"}],
}


def _pushed() -> World:
    w = World()
    for definition in (CHILD, PARENT, ON_SIGNAL):
        w.push(definition)
    return w


def _running(w: World) -> list[tuple[str, str, int]]:
    return [
        (iid, step_id, step.attempt)
        for iid, state in sorted(w.instances.items())
        for step_id, step in state.steps.items()
        if step.status.is_active and step.attempt > 0
    ]


def _command(w: World, data: st.DataObject, n: int) -> Command:
    kind = data.draw(
        st.sampled_from(["start", "succeed", "fail", "signal", "stop", "restart", "breakpoint"])
    )
    running = _running(w)
    if kind in ("succeed", "fail") and running:
        iid, step_id, attempt = data.draw(st.sampled_from(running))
        if kind == "succeed":
            return ReportAttemptSucceeded(iid, step_id, attempt, json.dumps({"n": n}))
        return ReportAttemptFailed(iid, step_id, attempt, FailureKind.USER, "exit 1")
    instances = sorted(w.instances)
    if kind == "stop" and instances:
        return StopInstance(data.draw(st.sampled_from(instances)), "test")
    if kind == "restart" and instances:
        return RestartInstance(data.draw(st.sampled_from(instances)))
    if kind == "signal":
        table = data.draw(st.sampled_from(["sales", "orders"]))
        request = data.draw(st.sampled_from(["r1", "r2", f"r{n}"]))
        return SendSignal("ready", request, json.dumps({"table": table}), "null", "api:test")
    if kind == "breakpoint":
        return SetWorkflowBreakpoint("parent", "work", data.draw(st.booleans()))
    return _start(w, n)


def _start(w: World, n: int) -> StartInstance:
    wf = w.workflows["parent"]
    text = wf.definitions[wf.latest_version]
    return StartInstance(f"p~{n}", "parent", wf.latest_version, text, "{}", "t", admitted=False)


def _fold(aggregate: str, state: Any, events: list[Event]) -> Any:
    evolve = BY_NAME[aggregate].evolve
    for e in events:
        state = evolve(state, e)
    return state


def _through_a_snapshot(aggregate: str, state: Any) -> Any:
    record = BY_NAME[aggregate].snapshot(state)
    read = CODEC.decode(CODEC.encode_state(aggregate, record))
    assert isinstance(read, StateRecord) and read.aggregate == aggregate
    return BY_NAME[aggregate].restore(read.record)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_snapshot_at_any_cut_then_the_tail_equals_the_full_fold(data: st.DataObject) -> None:
    w = _pushed()
    w.when(_start(w, 0))
    for n in range(1, data.draw(st.integers(min_value=1, max_value=30))):
        # Time moves (up to two days a command), so the signals' dedup windows turn over too.
        w.now += data.draw(st.sampled_from([0, HOUR, 30 * HOUR]))
        try:
            w.when(_command(w, data, n))
        except Rejected:
            continue  # a command that can never apply: nothing was decided
    kinds = {aggregate for aggregate, _ in w.histories}
    assert kinds == {"workflow", "instance", "signal"}
    for (aggregate, _key), events in w.histories.items():
        full = _fold(aggregate, None, events)
        for cut in range(1, len(events) + 1):
            head = _through_a_snapshot(aggregate, _fold(aggregate, None, events[:cut]))
            assert _fold(aggregate, head, events[cut:]) == full


def test_the_current_snapshot_schema_is_published() -> None:
    # Fails after a change to a snapshot schema until `python -m services.adapters.avro`
    # records it: without its published version, a later Baton could not read today's archive.
    assert CODEC.schema_id in {schema_id(load_schema_file(path)) for _, path in PUBLISHED}


def _states() -> dict[str, Any]:
    w = _pushed()
    w.when(_start(w, 0))
    w.when(SendSignal("ready", "r1", json.dumps({"table": "sales"}), "null", "api:test"))
    return {
        "instance": w.instances["p~0"],
        "workflow": w.workflows["parent"],
        "signal": w.signals["ready"],
    }


@pytest.mark.parametrize(("version", "path"), PUBLISHED)
def test_every_published_version_is_read_by_todays_codec(version: int, path: Any) -> None:
    # What an older engine wrote to the archive (kept for ever) restores after an upgrade.
    published = load_schema_file(path)
    header = frame_header(schema_id(published))
    for aggregate, state in _states().items():
        record = BY_NAME[aggregate].snapshot(state)
        entry = {"entry": (STATE_RECORDS[aggregate], record)}
        read = CODEC.decode(write_frame(header, published, entry, STATE_RECORDS[aggregate]))
        assert isinstance(read, StateRecord) and read.aggregate == aggregate
        restored = BY_NAME[aggregate].restore(read.record)
        assert restored.seq == state.seq, f"v{version} {aggregate}"
        if aggregate == "signal":
            assert restored.request_ids.get("r1") == 1  # v1 held one generation, for ever


def test_the_checkpoint_reads_back() -> None:
    checkpoint = Checkpoint(events_from=1234, commands_offset=99, written_at=7)
    assert CODEC.decode(CODEC.encode_checkpoint(checkpoint)) == checkpoint
    seen = Checkpoint(1, 2, 3, (("wf~1", "a", 2, 1_700_000_000_000_000),))
    assert CODEC.decode(CODEC.encode_checkpoint(seen)) == seen


def test_a_definition_reads_back() -> None:
    definition = DefinitionRecord("ab" * 32, '{"id":"wf"}')
    assert CODEC.decode(CODEC.encode_definition(definition)) == definition


def test_a_snapshot_another_schema_wrote_is_refused() -> None:
    body = CODEC.encode_checkpoint(Checkpoint(1, 2, 3))
    other = frame_header(CODEC.schema_id ^ 1) + body[5:]
    with pytest.raises(DecodeError, match="unknown schema id"):
        CODEC.decode(other)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x01abcd", b"\x00" + b"\xff" * 12])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(data)


def test_a_truncated_state_is_refused() -> None:
    w = _pushed()
    record = BY_NAME["workflow"].snapshot(w.workflows["parent"])
    data = CODEC.encode_state("workflow", record)
    with pytest.raises(DecodeError):
        CODEC.decode(data[:-3])


def test_a_workflows_queued_starts_keep_their_definition_by_reference() -> None:
    from services.engine.snapshots import encode_state_record, restore_record, state_key

    w = _pushed()
    for n in range(40):  # PARALLEL max 2: 38 wait, each with the version's whole text
        w.when(_start(w, n))
    state = w.workflows["parent"]
    assert len(state.queue) == 38
    known: dict[str, str] = {}
    new: dict[str, str] = {}
    data = encode_state_record(CODEC, "workflow", state, known, new)
    text = state.definitions[state.latest_version]
    assert list(new.values()) == [text]  # once, for every queued start
    assert len(data) < len(text) * 2 + 38 * 300
    _, _, restored = restore_record(CODEC, state_key("workflow", "parent"), data, new)
    assert restored == state
