"""The Avro wire format: golden samples, stored bytes of older writers, schema history (inv. 6).

Every event type, wire command and the task round-trips; every stored golden ``.bin`` still
decodes; every published schema version can be read by today's reader; malformed input only
ever raises ``DecodeError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import struct
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from services.adapters.avro import (
    COMMAND_RECORD,
    DEFAULT_SCHEMA_DIR,
    EVENT_RECORD,
    SUBJECTS,
    TASK_RECORD,
    Codec,
    DecodeError,
    EncodeError,
    schema_id,
)
from services.domain.protocol.commands import WIRE_COMMANDS, CommandEnvelope, FireTimers
from services.domain.protocol.events import EVENT_TYPES, Event, StepAttemptFailed
from services.domain.protocol.tasks import Task
from tests.golden.regenerate import WIRE_DIR, encode
from tests.golden.samples import (
    COMMAND_VARIANTS,
    COMMANDS,
    EVENT_VARIANTS,
    EVENTS,
    TASK,
    TASK_VARIANTS,
    golden,
)

Golden = Event | CommandEnvelope | Task
CODEC = Codec()
GOLDEN = golden()
# The wire subjects' published versions (the snapshots' history has its own tests).
HISTORY = sorted(
    path
    for subject in SUBJECTS.values()
    for path in (DEFAULT_SCHEMA_DIR / "history" / subject).glob("v*.avsc")
)


def decode(codec: Codec, value: Golden, data: bytes) -> Golden:
    if isinstance(value, Event):
        return codec.decode_event(data)
    if isinstance(value, CommandEnvelope):
        return codec.decode_command(data)
    return codec.decode_task(data)


def _id(value: Golden) -> str:
    return "Task" if isinstance(value, Task) else type(value.payload).__name__


# -- coverage: a schema for every type (STYLE habit 4) ----------------------------------------


def test_every_event_type_has_a_sample_and_a_schema() -> None:
    assert {type(e.payload) for e in EVENTS} == set(EVENT_TYPES)
    for cls in EVENT_TYPES:
        assert (DEFAULT_SCHEMA_DIR / f"baton.events.{cls.__name__}.avsc").is_file(), cls


def test_every_wire_command_has_a_sample_and_a_schema() -> None:
    assert {type(c.payload) for c in COMMANDS} == set(WIRE_COMMANDS)
    for cls in WIRE_COMMANDS:
        assert (DEFAULT_SCHEMA_DIR / f"baton.commands.{cls.__name__}.avsc").is_file(), cls


def test_each_schema_file_is_one_named_type_named_by_its_full_name() -> None:
    for path in DEFAULT_SCHEMA_DIR.glob("*.avsc"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert f"{schema['namespace']}.{schema['name']}" == path.stem
        assert schema.get("doc"), path.name
        for field in schema.get("fields", []):
            assert field.get("doc"), f"{path.name}: field {field['name']} has no doc"


def test_optional_fields_default_to_null() -> None:
    for path in DEFAULT_SCHEMA_DIR.glob("*.avsc"):
        for field in json.loads(path.read_text(encoding="utf-8")).get("fields", []):
            if isinstance(field["type"], list) and field["type"][0] == "null":
                assert "default" in field and field["default"] is None, (path.name, field)


def test_internal_commands_do_not_travel() -> None:
    envelope = CommandEnvelope("c-1", 0, FireTimers("i-1"))
    with pytest.raises(EncodeError, match="FireTimers"):
        CODEC.encode_command(envelope)


# -- ids and the registry view ------------------------------------------------------------


def test_schema_ids_are_derived_from_the_schema() -> None:
    assert Codec().schemas() == CODEC.schemas()
    for record, subject in SUBJECTS.items():
        current = CODEC.current_schema(record)
        assert current.subject == subject
        parsed = CODEC.writer_schema(current.id)
        assert parsed is not None
        assert schema_id(parsed) == current.id
        assert 0 <= current.id < 2**31


def test_the_current_schemas_are_published_in_the_history() -> None:
    # Fails after a schema change until `python -m services.adapters.avro` records it.
    published = {(p.parent.name, int(p.stem[1:])) for p in HISTORY}
    for record in SUBJECTS:
        current = CODEC.current_schema(record)
        assert (current.subject, current.version) in published, (
            f"{record} changed: run `python -m services.adapters.avro` to publish it"
        )


def test_registry_entries_are_self_contained_json() -> None:
    entries = CODEC.schemas()
    assert len({(e.subject, e.version) for e in entries}) == len(entries)
    for entry in entries:
        schema = json.loads(entry.schema_json)
        assert schema["type"] == "record"
        assert "__fastavro_parsed" not in entry.schema_json


def test_the_frame_is_confluent() -> None:
    data = CODEC.encode_task(TASK)
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == CODEC.current_schema(TASK_RECORD).id


# -- round trips ------------------------------------------------------------------------------


ALL_SAMPLES: list[Golden] = [
    *EVENTS,
    *EVENT_VARIANTS,
    *COMMANDS,
    *COMMAND_VARIANTS,
    TASK,
    *TASK_VARIANTS,
]


@pytest.mark.parametrize("value", ALL_SAMPLES, ids=_id)
def test_golden_samples_round_trip(value: Golden) -> None:
    assert decode(CODEC, value, encode(CODEC, value)) == value


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_stored_golden_bytes_still_decode(name: str) -> None:
    path = WIRE_DIR / f"{name}.bin"
    assert path.is_file(), f"missing {path}: run `python -m tests.golden.regenerate`"
    value = GOLDEN[name]
    assert decode(CODEC, value, path.read_bytes()) == value


def test_no_stray_golden_bytes() -> None:
    assert {p.stem for p in WIRE_DIR.glob("*.bin")} == set(GOLDEN)


# -- invariant 6: every published version is readable by today's reader ----------------------


def _historical_frame(writer_id: int, writer: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + writer_id.to_bytes(4, "big"))
    schemaless_writer(buf, writer, record)
    return buf.getvalue()


def _union_names(writer: dict[str, Any]) -> set[str]:
    payload: list[Any] = next((f["type"] for f in writer["fields"] if f["name"] == "payload"), [])
    return {b if isinstance(b, str) else b["name"] for b in payload}


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_published_version_is_read_by_the_current_reader(path: Path) -> None:
    subject, version = path.parent.name, int(path.stem[1:])
    entry = next(e for e in CODEC.schemas() if (e.subject, e.version) == (subject, version))
    writer = CODEC.writer_schema(entry.id)
    assert writer is not None
    record = {v: k for k, v in SUBJECTS.items()}[subject]
    is_current = entry.id == CODEC.current_schema(record).id
    samples: list[Golden]
    if record == EVENT_RECORD:
        samples = [*EVENTS, *EVENT_VARIANTS]
    elif record == COMMAND_RECORD:
        samples = [*COMMANDS, *COMMAND_VARIANTS]
    else:
        samples = [TASK, *TASK_VARIANTS]
    names = _union_names(writer)
    checked = 0
    for value in samples:
        if isinstance(value, Event):
            datum = CODEC.event_record(value)
        elif isinstance(value, CommandEnvelope):
            datum = CODEC.command_record(value)
        else:
            datum = CODEC.task_record(value)
        if names and datum["payload"][0] not in names:
            continue  # a type added after this version: its writers could not write it
        try:
            frame = _historical_frame(entry.id, writer, datum)
        except ValueError:
            continue  # a value this version could not express (an enum symbol added later)
        decoded = decode(CODEC, value, frame)
        if is_current:
            assert decoded == value
        else:
            assert type(decoded) is type(value)
            if not isinstance(value, Task):
                assert type(decoded.payload) is type(value.payload)  # type: ignore[union-attr]
        checked += 1
    assert checked > 0


# -- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated frame"),
        (b"\x00\x00", "truncated frame"),
        (b"\x01" + bytes(10), "magic byte"),
        (b"\x00\x00\x00\x00\x07" + bytes(10), "unknown schema id"),
    ],
)
def test_malformed_frames_raise_decode_error(data: bytes, reason: str) -> None:
    for decoder in (CODEC.decode_event, CODEC.decode_command, CODEC.decode_task):
        with pytest.raises(DecodeError, match=reason):
            decoder(data)


@pytest.mark.parametrize("value", [EVENTS[10], COMMANDS[7], TASK], ids=_id)
def test_truncated_bodies_raise_decode_error(value: Golden) -> None:
    data = encode(CODEC, value)
    for cut in range(5, len(data)):
        with pytest.raises(DecodeError):
            decode(CODEC, value, data[:cut])


def test_trailing_bytes_raise_decode_error() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.decode_task(CODEC.encode_task(TASK) + b"\x00")


def test_a_message_of_another_topic_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"belongs to baton\.tasks-value"):
        CODEC.decode_event(CODEC.encode_task(TASK))


def test_unknown_union_branch_raises_decode_error() -> None:
    # The envelope's fields up to the payload, then a union index no branch has.
    prefix = {
        "type": "record",
        "name": "baton.commands.Command",
        "fields": [
            {"name": "command_id", "type": "string"},
            {"name": "issued_at", "type": "long"},
            {"name": "type", "type": "string"},
            {"name": "schema_version", "type": "int"},
            {"name": "branch", "type": "long"},
        ],
    }
    current = CODEC.current_schema(COMMAND_RECORD).id
    record = {**CODEC.command_record(COMMANDS[2]), "branch": 99}
    with pytest.raises(DecodeError, match="malformed Avro body"):
        CODEC.decode_command(_historical_frame(current, prefix, record))


def test_envelope_type_must_match_the_payload() -> None:
    rec = CODEC.event_record(EVENTS[3])
    rec["type"] = "InstanceFailed"
    current = CODEC.current_schema(EVENT_RECORD)
    writer = CODEC.writer_schema(current.id)
    assert writer is not None
    with pytest.raises(DecodeError, match="does not match payload"):
        CODEC.decode_event(_historical_frame(current.id, writer, rec))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_decode_error(data: bytes) -> None:
    for decoder in (CODEC.decode_event, CODEC.decode_command, CODEC.decode_task):
        with contextlib.suppress(DecodeError):
            decoder(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SUBJECTS)), st.binary(max_size=96))
def test_random_bodies_behind_a_valid_header_raise_decode_error(record: str, body: bytes) -> None:
    header = b"\x00" + CODEC.current_schema(record).id.to_bytes(4, "big")
    for decoder in (CODEC.decode_event, CODEC.decode_command, CODEC.decode_task):
        with contextlib.suppress(DecodeError):
            decoder(header + body)


# -- property: any domain value round-trips ---------------------------------------------------

_INT32 = st.integers(-(2**31), 2**31 - 1)
# timestamp-micros decodes through datetime: years 1..9999.
_MICROS = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)


def _int32_fields() -> frozenset[str]:
    """The fields the schemas declare as Avro `int` (32-bit); every other int is a long.
    Read from the schemas, so a new int field is never generated out of its range."""
    names = set()
    for path in DEFAULT_SCHEMA_DIR.glob("*.avsc"):
        for field in json.loads(path.read_text()).get("fields", []):
            kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
            if "int" in kinds:
                names.add(field["name"])
    return frozenset(names)


_INT_FIELDS = _int32_fields()


def _strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        strategy: st.SearchStrategy[Any]
        if base is int:
            strategy = _INT32 if field.name in _INT_FIELDS else _MICROS
        elif base is str:
            strategy = st.text()
        elif base is bool:
            strategy = st.booleans()
        elif base is float:
            strategy = st.floats(allow_nan=False)
        elif isinstance(base, type) and issubclass(base, StrEnum):
            strategy = st.sampled_from(list(base))
        elif typing.get_origin(base) is tuple:
            strategy = st.lists(st.text(), max_size=4).map(tuple)
        else:
            raise TypeError(f"no strategy for {cls.__name__}.{field.name}: {hint}")
        kwargs[field.name] = st.none() | strategy if optional else strategy
    return st.builds(cls, **kwargs)


_EVENTS = st.builds(
    Event,
    event_id=st.text(),
    instance_id=st.none() | st.text(),
    workflow_id=st.text(),
    seq=st.integers(0, 2**63 - 1),
    occurred_at=_MICROS,
    payload=st.one_of([_strategy(cls) for cls in EVENT_TYPES]),
    caused_at=st.none() | _MICROS,
)
_COMMANDS = st.builds(
    CommandEnvelope,
    command_id=st.text(),
    issued_at=_MICROS,
    payload=st.one_of([_strategy(cls) for cls in WIRE_COMMANDS]),
)


@settings(max_examples=200, deadline=None)
@given(_EVENTS)
def test_any_event_round_trips(event: Event) -> None:
    assert CODEC.decode_event(CODEC.encode_event(event)) == event


@settings(max_examples=200, deadline=None)
@given(_COMMANDS)
def test_any_command_round_trips(command: CommandEnvelope) -> None:
    assert CODEC.decode_command(CODEC.encode_command(command)) == command


@settings(max_examples=100, deadline=None)
@given(_strategy(Task))
def test_any_task_round_trips(task: Task) -> None:
    assert CODEC.decode_task(CODEC.encode_task(task)) == task


def test_an_older_writer_without_a_later_field_is_resolved_by_its_default(
    tmp_path: Path,
) -> None:
    # Simulate history: v1 of the events subject had no StepAttemptFailed.retry_at.
    schema_dir = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMA_DIR, schema_dir)
    v1_path = schema_dir / "history" / "baton.events-value" / "v1.avsc"
    v1 = json.loads(v1_path.read_text(encoding="utf-8"))
    payload = next(f for f in v1["fields"] if f["name"] == "payload")
    failed = next(b for b in payload["type"] if b["name"] == "baton.events.StepAttemptFailed")
    failed["fields"] = [f for f in failed["fields"] if f["name"] != "retry_at"]
    v1_path.write_text(json.dumps(v1), encoding="utf-8")

    codec = Codec(schema_dir)
    old = next(e for e in codec.schemas() if (e.subject, e.version) == ("baton.events-value", 1))
    newest = len(list((schema_dir / "history" / "baton.events-value").glob("v*.avsc")))
    assert codec.current_schema(EVENT_RECORD).version == newest > 1
    writer = codec.writer_schema(old.id)
    assert writer is not None
    sample = EVENTS[10]
    assert isinstance(sample.payload, StepAttemptFailed)
    decoded = codec.decode_event(_historical_frame(old.id, writer, codec.event_record(sample)))
    assert decoded == dataclasses.replace(
        sample, payload=dataclasses.replace(sample.payload, retry_at=None)
    )
