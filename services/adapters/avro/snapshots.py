"""The records of the `baton.snapshots` topic, Avro in the Confluent frame like every other
record: an aggregate's state (as its aggregate's `snapshot` makes it), a shard's checkpoint,
a definition that instances' states refer to by hash, or a segment of the shard's archive
index. The archive (`baton.archive`) holds states in the same encoding.

A snapshot is a cache of the fold, never the truth, but the archive is kept for ever: this
codec reads what today's schema wrote and what every published version of it wrote
(`schemas/history/baton.snapshots-value/`), resolved to today's schema by Avro's rules (a field
added since has a default; each aggregate's `restore` knows what such a default means). A
record framed with an unknown schema id (a newer Baton), or a malformed one, is a DecodeError,
and the engine then folds that partition from the events log instead of guessing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.adapters.avro.errors import DecodeError
from services.adapters.avro.framing import Writer, frame_header, read_frame, write_frame
from services.adapters.avro.schemas import (
    DEFAULT_SCHEMA_DIR,
    SNAPSHOT_RECORD,
    SNAPSHOT_SUBJECT,
    history_files,
    load_schema_file,
    schema_id,
)

CHECKPOINT_RECORD = "baton.snapshots.ShardCheckpoint"
DEFINITION_RECORD = "baton.snapshots.DefinitionSnapshot"
SEGMENT_RECORD = "baton.snapshots.ArchiveSegment"
# The schema of each aggregate type's state, by the aggregate's name (decider.AGGREGATES).
STATE_RECORDS: dict[str, str] = {
    "instance": "baton.snapshots.InstanceSnapshot",
    "workflow": "baton.snapshots.WorkflowSnapshot",
    "signal": "baton.snapshots.SignalSnapshot",
}
_AGGREGATE_OF_RECORD = {record: name for name, record in STATE_RECORDS.items()}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a shard's snapshot stands (see the schema's docs)."""

    events_from: int
    commands_offset: int
    written_at: int
    # (instance id, step id, attempt, last heard of, UTC micros) of each attempt on a worker.
    attempts_seen: tuple[tuple[str, str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class DefinitionRecord:
    """A definition instances' states refer to by hash, stored once."""

    hash: str
    definition: str


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """A segment of a shard's archive index (see services/engine/archive.py): packed entries."""

    entries: bytes


@dataclass(frozen=True, slots=True)
class StateRecord:
    """An aggregate's state as read back: its aggregate's name and the plain record."""

    aggregate: str
    record: Mapping[str, Any]


class SnapshotCodec:
    def __init__(self, schema_dir: Path | None = None) -> None:
        directory = DEFAULT_SCHEMA_DIR if schema_dir is None else schema_dir
        schema = load_schema_file(directory / f"{SNAPSHOT_RECORD}.avsc")
        self.schema_id = schema_id(schema)
        self._parsed = schema  # load_schema_file parses it
        self._header = frame_header(self.schema_id)
        self._writers = {self.schema_id: Writer(SNAPSHOT_SUBJECT, self.schema_id, self._parsed)}
        for _version, path in history_files(directory / "history" / SNAPSHOT_SUBJECT):
            published = load_schema_file(path)
            sid = schema_id(published)
            self._writers.setdefault(sid, Writer(SNAPSHOT_SUBJECT, sid, published))

    def encode_state(self, aggregate: str, record: Mapping[str, Any]) -> bytes:
        entry = {"entry": (STATE_RECORDS[aggregate], record)}
        return write_frame(self._header, self._parsed, entry, STATE_RECORDS[aggregate])

    def encode_checkpoint(self, checkpoint: Checkpoint) -> bytes:
        record = {
            "events_from": checkpoint.events_from,
            "commands_offset": checkpoint.commands_offset,
            "written_at": checkpoint.written_at,
            "attempts_seen": [
                {"instance_id": i, "step_id": s, "attempt": a, "seen_at": t}
                for i, s, a, t in checkpoint.attempts_seen
            ],
        }
        entry = {"entry": (CHECKPOINT_RECORD, record)}
        return write_frame(self._header, self._parsed, entry, CHECKPOINT_RECORD)

    def encode_definition(self, definition: DefinitionRecord) -> bytes:
        entry = {
            "entry": (
                DEFINITION_RECORD,
                {"hash": definition.hash, "definition": definition.definition},
            )
        }
        return write_frame(self._header, self._parsed, entry, DEFINITION_RECORD)

    def encode_segment(self, segment: SegmentRecord) -> bytes:
        entry = {"entry": (SEGMENT_RECORD, {"entries": segment.entries})}
        return write_frame(self._header, self._parsed, entry, SEGMENT_RECORD)

    def decode(self, data: bytes) -> StateRecord | Checkpoint | DefinitionRecord | SegmentRecord:
        """DecodeError for anything today's schema did not write."""
        frame = read_frame(
            data, self._writers, SNAPSHOT_SUBJECT, self._parsed, names_only_when_ambiguous=True
        )
        entry = frame["entry"]
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise DecodeError(f"expected a named union member, got {type(entry).__name__}")
        name, record = entry
        if name == CHECKPOINT_RECORD:
            seen = tuple(
                (x["instance_id"], x["step_id"], x["attempt"], x["seen_at"])
                for x in record["attempts_seen"]
            )
            return Checkpoint(
                record["events_from"], record["commands_offset"], record["written_at"], seen
            )
        if name == DEFINITION_RECORD:
            return DefinitionRecord(record["hash"], record["definition"])
        if name == SEGMENT_RECORD:
            return SegmentRecord(bytes(record["entries"]))
        aggregate = _AGGREGATE_OF_RECORD.get(name)
        if aggregate is None:  # the union names nothing else; a guard, not a case
            raise DecodeError(f"{name} is no snapshot record")
        return StateRecord(aggregate, record)
