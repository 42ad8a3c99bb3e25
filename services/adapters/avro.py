"""The Avro wire format of events, commands and tasks (DESIGN §5).

Each message is Confluent-framed: magic byte 0, the 4-byte big-endian schema id, then the Avro
binary body, so standard Kafka tooling can decode the topics given Baton's registry endpoints.

Schemas live in ``schemas/`` as one named type per ``<full name>.avsc`` file; the three
top-level records (``baton.events.Event``, ``baton.commands.Command``, ``baton.tasks.Task``)
reference the others by name. A schema id is derived from the schema itself (the first 4 bytes
of SHA-256 over its Parsing Canonical Form, masked to 31 bits), so ids survive a rebuilt
database and every process agrees on them without a registry round trip.

Published versions are kept, fully expanded, under ``schemas/history/<subject>/v<N>.avsc``.
A message is decoded with its writer's schema (looked up by the id in its frame among every
version) resolved against today's reader schema: schemas evolve by Avro reader/writer
resolution (STYLE habit 8). After changing a schema, run ``python -m services.adapters.avro``
to record the new version in the history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeAlias

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import load_schema, to_parsing_canonical_form

from services.domain.protocol.commands import WIRE_COMMANDS, CommandEnvelope
from services.domain.protocol.events import EVENT_TYPES, Event
from services.domain.protocol.tasks import Task

DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

EVENT_RECORD = "baton.events.Event"
COMMAND_RECORD = "baton.commands.Command"
TASK_RECORD = "baton.tasks.Task"
SUBJECTS: dict[str, str] = {
    EVENT_RECORD: "baton.events-value",
    COMMAND_RECORD: "baton.commands-value",
    TASK_RECORD: "baton.tasks-value",
}
EVENT_NAMESPACE = "baton.events"
COMMAND_NAMESPACE = "baton.commands"

MAGIC = 0
HEADER_SIZE = 5
_ID_MASK = 0x7FFF_FFFF
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICRO = timedelta(microseconds=1)

_Record: TypeAlias = dict[str, Any]
_Schema: TypeAlias = dict[str, Any]


class DecodeError(ValueError):
    """The bytes are not a message this codec can read; the reason says why."""


class EncodeError(ValueError):
    """The value cannot be written with the current schemas (a type without a schema, ...)."""


class SchemaError(RuntimeError):
    """The schema files are inconsistent with each other or with the domain types."""


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One version of a subject, as the schema registry serves it."""

    id: int
    subject: str
    version: int
    schema_json: str


def schema_id(schema: _Schema) -> int:
    """The deterministic id of a (parsed, self-contained) schema."""
    canonical = to_parsing_canonical_form(schema).encode("utf-8")
    return int.from_bytes(hashlib.sha256(canonical).digest()[:4], "big") & _ID_MASK


def expanded_json(schema: _Schema, *, indent: int | None = None) -> str:
    """A parsed schema as self-contained JSON: every named type inlined at its first use."""
    # Sorted keys: the registry text must be the same in every process (ids already are).
    return json.dumps(_strip_fastavro_keys(schema), indent=indent, sort_keys=True)


def _strip_fastavro_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_fastavro_keys(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_fastavro_keys(v) for v in node]
    return node


def _load(path: Path) -> _Schema:
    """Parse a schema file, resolving named types from ``<full name>.avsc`` files beside it."""
    schema = load_schema(str(path))
    if not isinstance(schema, dict):
        raise SchemaError(f"{path} is not a named record or enum")
    return schema


def _micros(value: Any) -> int:
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MICRO
    if isinstance(value, int):
        return value
    raise TypeError(f"expected a timestamp, got {type(value).__name__}")


def _micros_or_none(value: Any) -> int | None:
    return None if value is None else _micros(value)


def _is_timestamp(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_is_timestamp(branch) for branch in avro_type)
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-micros"


@dataclass(frozen=True, slots=True)
class _RecordMap:
    """How one dataclass maps to and from its Avro record, computed once."""

    cls: type[Any]
    full_name: str
    short_name: str
    fields: tuple[str, ...]
    getter: Callable[[Any], tuple[Any, ...]]
    # Only the fields whose Avro value is not already the domain value: enums, tuples, times.
    decoders: tuple[tuple[str, Callable[[Any], Any]], ...]

    def to_record(self, obj: Any) -> _Record:
        return dict(zip(self.fields, self.getter(obj), strict=True))

    def from_record(self, record: _Record) -> Any:
        for name, decode in self.decoders:
            record[name] = decode(record[name])
        return self.cls(**record)


def _record_map(cls: type[Any], record_schema: _Schema) -> _RecordMap:
    names = tuple(f.name for f in dataclasses.fields(cls))
    avro_fields = {f["name"]: f["type"] for f in record_schema["fields"]}
    if tuple(avro_fields) != names:
        raise SchemaError(
            f"schema {record_schema['name']} has fields {list(avro_fields)} but "
            f"{cls.__name__} has {list(names)}"
        )
    hints = typing.get_type_hints(cls)
    decoders: list[tuple[str, Callable[[Any], Any]]] = []
    for name in names:
        hint = hints[name]
        optional = type(None) in typing.get_args(hint)
        inner = [a for a in typing.get_args(hint) if a is not type(None)] if optional else [hint]
        base = inner[0] if len(inner) == 1 else hint
        if _is_timestamp(avro_fields[name]):
            decoders.append((name, _micros_or_none if optional else _micros))
        elif isinstance(base, type) and issubclass(base, StrEnum):
            decoders.append((name, base))
        elif typing.get_origin(base) is tuple:
            decoders.append((name, tuple))
    getter: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:
        single = names[0]
        getter = lambda obj: (getattr(obj, single),)  # noqa: E731  (attrgetter of one name is no tuple)
    else:
        getter = attrgetter(*names)
    full_name = record_schema["name"]
    return _RecordMap(cls, full_name, full_name.rsplit(".", 1)[-1], names, getter, tuple(decoders))


@dataclass(frozen=True, slots=True)
class _Writer:
    subject: str
    schema_id: int
    parsed: _Schema


@dataclass(slots=True)
class _Subject:
    """A top-level schema: today's version plus every published one."""

    record: str
    current: _Schema
    current_id: int
    version: int
    header: bytes
    registered: list[RegisteredSchema]


class Codec:
    """Encodes and decodes the Confluent-framed Avro messages of the three topics' values.

    Construction reads the schema files and fails (``SchemaError``) when they disagree with the
    domain types; after that the codec does no I/O and is safe to share.
    """

    def __init__(self, schema_dir: Path | None = None) -> None:
        directory = DEFAULT_SCHEMA_DIR if schema_dir is None else schema_dir
        self._writers: dict[int, _Writer] = {}
        self._subjects: dict[str, _Subject] = {}
        for record in SUBJECTS:
            self._subjects[record] = self._load_subject(directory, record)

        events = self._subjects[EVENT_RECORD]
        commands = self._subjects[COMMAND_RECORD]
        self._event = events
        self._command = commands
        self._task = self._subjects[TASK_RECORD]
        self._event_maps = _payload_maps(events.current, EVENT_TYPES, EVENT_NAMESPACE)
        self._command_maps = _payload_maps(commands.current, WIRE_COMMANDS, COMMAND_NAMESPACE)
        self._event_by_name = {m.full_name: m for m in self._event_maps.values()}
        self._command_by_name = {m.full_name: m for m in self._command_maps.values()}
        self._task_map = _record_map(Task, self._task.current)

    # -- loading -------------------------------------------------------------------------------

    def _load_subject(self, directory: Path, record: str) -> _Subject:
        subject = SUBJECTS[record]
        path = directory / f"{record}.avsc"
        if not path.is_file():
            raise SchemaError(f"missing schema file {path}")
        current = _load(path)
        current_id = schema_id(current)
        registered: list[RegisteredSchema] = []
        history = directory / "history" / subject
        for version, hist_path in _history_files(history):
            parsed = _load(hist_path)
            if parsed.get("name") != record:
                raise SchemaError(f"{hist_path} defines {parsed.get('name')}, not {record}")
            sid = schema_id(parsed)
            entry = RegisteredSchema(sid, subject, version, expanded_json(parsed))
            self._add_writer(_Writer(subject, sid, parsed), entry)
            registered.append(entry)
        published = {r.id: r.version for r in registered}
        if current_id in published:
            version = published[current_id]
        else:  # changed since the last snapshot: served as the next version
            version = max(published.values(), default=0) + 1
            entry = RegisteredSchema(current_id, subject, version, expanded_json(current))
            registered.append(entry)
        # The current parsed schema replaces its historical twin, so that messages written by
        # today's writer decode without resolution.
        self._writers[current_id] = _Writer(subject, current_id, current)
        header = bytes([MAGIC]) + current_id.to_bytes(4, "big")
        return _Subject(record, current, current_id, version, header, registered)

    def _add_writer(self, writer: _Writer, entry: RegisteredSchema) -> None:
        known = self._writers.get(writer.schema_id)
        if known is not None:
            raise SchemaError(
                f"schema id {writer.schema_id} of {entry.subject} v{entry.version} is already "
                f"used by a {known.subject} schema (same canonical form or a hash collision)"
            )
        self._writers[writer.schema_id] = writer

    # -- registry --------------------------------------------------------------------------------

    def schemas(self) -> list[RegisteredSchema]:
        """Every version of every subject, for the schema registry."""
        return [r for s in self._subjects.values() for r in s.registered]

    def current_schema(self, record: str) -> RegisteredSchema:
        """Today's version of a top-level record (``baton.events.Event`` ...)."""
        s = self._subjects[record]
        return next(r for r in s.registered if r.id == s.current_id)

    def writer_schema(self, schema_id: int) -> _Schema | None:
        """The parsed schema of any known version, by id."""
        writer = self._writers.get(schema_id)
        return None if writer is None else writer.parsed

    # -- records (also used by tests to write with historical schemas) ----------------------

    def event_record(self, e: Event) -> _Record:
        m = self._event_maps.get(type(e.payload))
        if m is None:
            raise EncodeError(f"no Avro schema for event payload {type(e.payload).__name__}")
        return {
            "event_id": e.event_id,
            "instance_id": e.instance_id,
            "workflow_id": e.workflow_id,
            "seq": e.seq,
            "occurred_at": e.occurred_at,
            "caused_at": e.caused_at,
            "signal_name": e.signal_name,
            "type": m.short_name,
            "schema_version": self._event.version,
            "payload": (m.full_name, m.to_record(e.payload)),
        }

    def command_record(self, c: CommandEnvelope) -> _Record:
        m = self._command_maps.get(type(c.payload))
        if m is None:
            raise EncodeError(f"no Avro schema for command {type(c.payload).__name__}")
        return {
            "command_id": c.command_id,
            "issued_at": c.issued_at,
            "type": m.short_name,
            "schema_version": self._command.version,
            "payload": (m.full_name, m.to_record(c.payload)),
        }

    def task_record(self, t: Task) -> _Record:
        return self._task_map.to_record(t)

    # -- encode --------------------------------------------------------------------------------

    def encode_event(self, e: Event) -> bytes:
        return _frame(self._event, self.event_record(e))

    def encode_command(self, c: CommandEnvelope) -> bytes:
        return _frame(self._command, self.command_record(c))

    def encode_task(self, t: Task) -> bytes:
        return _frame(self._task, self.task_record(t))

    # -- decode --------------------------------------------------------------------------------

    def decode_event(self, data: bytes) -> Event:
        rec = self._read(data, self._event)
        try:
            payload = _payload(rec, self._event_by_name)
            return Event(
                rec["event_id"],
                rec["instance_id"],
                rec["workflow_id"],
                rec["seq"],
                _micros(rec["occurred_at"]),
                payload,
                _micros_or_none(rec.get("caused_at")),
                rec.get("signal_name"),
            )
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"event does not map to the domain: {exc!r}") from exc

    def decode_command(self, data: bytes) -> CommandEnvelope:
        rec = self._read(data, self._command)
        try:
            payload = _payload(rec, self._command_by_name)
            return CommandEnvelope(rec["command_id"], _micros(rec["issued_at"]), payload)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"command does not map to the domain: {exc!r}") from exc

    def decode_task(self, data: bytes) -> Task:
        rec = self._read(data, self._task)
        try:
            task: Task = self._task_map.from_record(rec)
        except Exception as exc:
            raise DecodeError(f"task does not map to the domain: {exc!r}") from exc
        return task

    def _read(self, data: bytes, subject: _Subject) -> _Record:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise DecodeError(
                f"truncated frame: {len(data)} bytes, the header alone is {HEADER_SIZE}"
            )
        if data[0] != MAGIC:
            raise DecodeError(f"wrong magic byte {data[0]:#04x}: not Confluent-framed Avro")
        sid = int.from_bytes(data[1:HEADER_SIZE], "big")
        writer = self._writers.get(sid)
        if writer is None:
            raise DecodeError(f"unknown schema id {sid}")
        expected = SUBJECTS[subject.record]
        if writer.subject != expected:
            raise DecodeError(f"schema id {sid} belongs to {writer.subject}, not {expected}")
        reader = None if writer.parsed is subject.current else subject.current
        fo = io.BytesIO(data)
        fo.seek(HEADER_SIZE)
        try:
            rec = schemaless_reader(fo, writer.parsed, reader, return_record_name=True)
        except Exception as exc:
            # fastavro reports malformed input with many exception types (EOFError, IndexError,
            # UnicodeDecodeError, SchemaResolutionError, OverflowError ...): one reason for all.
            raise DecodeError(
                f"malformed Avro body for schema id {sid} ({writer.subject}): {exc!r}"
            ) from exc
        if fo.tell() != len(data):
            raise DecodeError(
                f"{len(data) - fo.tell()} trailing bytes after the Avro body (schema id {sid})"
            )
        if not isinstance(rec, dict):
            raise DecodeError(f"expected a record, got {type(rec).__name__}")
        return rec


def _frame(subject: _Subject, record: _Record) -> bytes:
    buf = io.BytesIO()
    buf.write(subject.header)
    try:
        schemaless_writer(buf, subject.current, record)
    except Exception as exc:
        raise EncodeError(f"cannot write {subject.record}: {exc!r}") from exc
    return buf.getvalue()


def _payload(rec: _Record, by_name: dict[str, _RecordMap]) -> Any:
    branch = rec["payload"]
    if not isinstance(branch, tuple):
        raise DecodeError("payload is not a named record")
    name, body = branch
    m = by_name.get(name)
    if m is None:
        raise DecodeError(f"unknown payload record {name}")
    if rec["type"] != m.short_name:
        raise DecodeError(f"envelope type {rec['type']!r} does not match payload record {name}")
    return m.from_record(body)


def _payload_maps(
    envelope: _Schema, types: Iterable[type[Any]], namespace: str
) -> dict[type[Any], _RecordMap]:
    named: dict[str, _Schema] = envelope["__named_schemas"]
    maps: dict[type[Any], _RecordMap] = {}
    for cls in types:
        full_name = f"{namespace}.{cls.__name__}"
        record_schema = named.get(full_name)
        if record_schema is None:
            raise SchemaError(f"{envelope['name']} has no payload record {full_name}")
        maps[cls] = _record_map(cls, record_schema)
    payload_type = next(f["type"] for f in envelope["fields"] if f["name"] == "payload")
    union = [b if isinstance(b, str) else b["name"] for b in payload_type]
    missing = sorted(set(union) - {m.full_name for m in maps.values()})
    if missing:
        raise SchemaError(
            f"{envelope['name']} payload has records without a domain type: {missing}"
        )
    return maps


def _history_files(history: Path) -> list[tuple[int, Path]]:
    if not history.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for path in history.glob("v*.avsc"):
        stem = path.stem[1:]
        if not stem.isdigit():
            raise SchemaError(f"history file {path} is not named v<N>.avsc")
        found.append((int(stem), path))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"history versions in {history} are not 1..N: {[v for v, _ in found]}")
    return found


def snapshot_history(schema_dir: Path | None = None) -> list[Path]:
    """Record each top-level schema that changed since its last published version."""
    directory = DEFAULT_SCHEMA_DIR if schema_dir is None else schema_dir
    written: list[Path] = []
    for record, subject in SUBJECTS.items():
        current = _load(directory / f"{record}.avsc")
        history = directory / "history" / subject
        versions = _history_files(history)
        known = {schema_id(_load(p)) for _, p in versions}
        if schema_id(current) in known:
            continue
        history.mkdir(parents=True, exist_ok=True)
        path = history / f"v{len(versions) + 1}.avsc"
        path.write_text(expanded_json(current, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in snapshot_history():
        print(f"wrote {written_path}")
