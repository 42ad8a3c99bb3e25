"""The three top-level records as subjects: today's schema and every published version.

A message is decoded with its writer's schema (looked up by the id in its frame among every
version) resolved against today's reader schema, so this loads them all, once, and refuses two
versions that share an id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.adapters.avro.errors import SchemaError
from services.adapters.avro.framing import Writer, frame_header
from services.adapters.avro.schemas import (
    SUBJECTS,
    RegisteredSchema,
    Schema,
    expanded_json,
    history_files,
    load_schema_file,
    schema_id,
)


@dataclass(slots=True)
class Subject:
    """A top-level schema: today's version plus every published one."""

    record: str
    current: Schema
    current_id: int
    version: int
    header: bytes
    registered: list[RegisteredSchema]


def load_subjects(directory: Path) -> tuple[dict[str, Subject], dict[int, Writer]]:
    """Every subject of `SUBJECTS` from `directory`, by record name, and every writer schema
    by id; SchemaError when a file is missing or the versions disagree."""
    writers: dict[int, Writer] = {}
    subjects = {record: _load_subject(directory, record, writers) for record in SUBJECTS}
    return subjects, writers


def _load_subject(directory: Path, record: str, writers: dict[int, Writer]) -> Subject:
    subject = SUBJECTS[record]
    path = directory / f"{record}.avsc"
    if not path.is_file():
        raise SchemaError(f"missing schema file {path}")
    current = load_schema_file(path)
    current_id = schema_id(current)
    registered: list[RegisteredSchema] = []
    for version, hist_path in history_files(directory / "history" / subject):
        parsed = load_schema_file(hist_path)
        if parsed.get("name") != record:
            raise SchemaError(f"{hist_path} defines {parsed.get('name')}, not {record}")
        sid = schema_id(parsed)
        entry = RegisteredSchema(sid, subject, version, expanded_json(parsed))
        _add_writer(writers, Writer(subject, sid, parsed), entry)
        registered.append(entry)
    published = {r.id: r.version for r in registered}
    if current_id in published:
        version = published[current_id]
    else:  # changed since the last snapshot: served as the next version
        version = max(published.values(), default=0) + 1
        registered.append(RegisteredSchema(current_id, subject, version, expanded_json(current)))
    # The current parsed schema replaces its historical twin, so that messages written by
    # today's writer decode without resolution.
    writers[current_id] = Writer(subject, current_id, current)
    return Subject(record, current, current_id, version, frame_header(current_id), registered)


def _add_writer(writers: dict[int, Writer], writer: Writer, entry: RegisteredSchema) -> None:
    known = writers.get(writer.schema_id)
    if known is not None:
        raise SchemaError(
            f"schema id {writer.schema_id} of {entry.subject} v{entry.version} is already "
            f"used by a {known.subject} schema (same canonical form or a hash collision)"
        )
    writers[writer.schema_id] = writer
