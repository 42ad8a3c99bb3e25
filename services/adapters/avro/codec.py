"""The codec of the three topics' values: events, commands and tasks to and from framed Avro."""

from __future__ import annotations

from pathlib import Path

from services.adapters.avro.errors import DecodeError, EncodeError
from services.adapters.avro.framing import read_frame, write_frame
from services.adapters.avro.records import (
    Record,
    decode_payload,
    micros,
    micros_or_none,
    payload_maps,
    record_map,
)
from services.adapters.avro.schemas import (
    COMMAND_NAMESPACE,
    COMMAND_RECORD,
    DEFAULT_SCHEMA_DIR,
    EVENT_NAMESPACE,
    EVENT_RECORD,
    SUBJECTS,
    TASK_RECORD,
    RegisteredSchema,
    Schema,
)
from services.adapters.avro.subjects import Subject, load_subjects
from services.domain.protocol.commands import WIRE_COMMANDS, CommandEnvelope
from services.domain.protocol.events import EVENT_TYPES, Event
from services.domain.protocol.tasks import Task


class Codec:
    """Encodes and decodes the Confluent-framed Avro messages of the three topics' values.

    Construction reads the schema files and fails (``SchemaError``) when they disagree with the
    domain types; after that the codec does no I/O and is safe to share.
    """

    def __init__(self, schema_dir: Path | None = None) -> None:
        directory = DEFAULT_SCHEMA_DIR if schema_dir is None else schema_dir
        self._subjects, self._writers = load_subjects(directory)
        self._event = events = self._subjects[EVENT_RECORD]
        self._command = commands = self._subjects[COMMAND_RECORD]
        self._task = self._subjects[TASK_RECORD]
        self._event_maps = payload_maps(events.current, EVENT_TYPES, EVENT_NAMESPACE)
        self._command_maps = payload_maps(commands.current, WIRE_COMMANDS, COMMAND_NAMESPACE)
        self._event_by_name = {m.full_name: m for m in self._event_maps.values()}
        self._command_by_name = {m.full_name: m for m in self._command_maps.values()}
        self._task_map = record_map(Task, self._task.current)

    # -- registry --------------------------------------------------------------------------------

    def schemas(self) -> list[RegisteredSchema]:
        """Every version of every subject, for the schema registry."""
        return [r for s in self._subjects.values() for r in s.registered]

    def current_schema(self, record: str) -> RegisteredSchema:
        """Today's version of a top-level record (``baton.events.Event`` ...)."""
        s = self._subjects[record]
        return next(r for r in s.registered if r.id == s.current_id)

    def writer_schema(self, schema_id: int) -> Schema | None:
        """The parsed schema of any known version, by id."""
        writer = self._writers.get(schema_id)
        return None if writer is None else writer.parsed

    # -- records (also used by tests to write with historical schemas) ----------------------

    def event_record(self, e: Event) -> Record:
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

    def command_record(self, c: CommandEnvelope) -> Record:
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

    def task_record(self, t: Task) -> Record:
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
            payload = decode_payload(rec, self._event_by_name)
            return Event(
                rec["event_id"],
                rec["instance_id"],
                rec["workflow_id"],
                rec["seq"],
                micros(rec["occurred_at"]),
                payload,
                micros_or_none(rec.get("caused_at")),
                rec.get("signal_name"),
            )
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"event does not map to the domain: {exc!r}") from exc

    def decode_command(self, data: bytes) -> CommandEnvelope:
        rec = self._read(data, self._command)
        try:
            payload = decode_payload(rec, self._command_by_name)
            return CommandEnvelope(rec["command_id"], micros(rec["issued_at"]), payload)
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

    def _read(self, data: bytes, subject: Subject) -> Record:
        return read_frame(data, self._writers, SUBJECTS[subject.record], subject.current)


def _frame(subject: Subject, record: Record) -> bytes:
    return write_frame(subject.header, subject.current, record, subject.record)
