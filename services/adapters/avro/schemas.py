"""The schema files: where they are, how they load, their ids, and their published history.

A schema id is derived from the schema itself (the first 4 bytes of SHA-256 over its Parsing
Canonical Form, masked to 31 bits), so ids survive a rebuilt database and every process agrees
on them without a registry round trip. Published versions are kept, fully expanded, under
``schemas/history/<subject>/v<N>.avsc``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from fastavro.schema import load_schema, to_parsing_canonical_form

from services.adapters.avro.errors import SchemaError

DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"

EVENT_RECORD = "baton.events.Event"
COMMAND_RECORD = "baton.commands.Command"
TASK_RECORD = "baton.tasks.Task"
SUBJECTS: dict[str, str] = {
    EVENT_RECORD: "baton.events-value",
    COMMAND_RECORD: "baton.commands-value",
    TASK_RECORD: "baton.tasks-value",
}
# The engine's snapshots and archive (services/adapters/avro/snapshots.py): not a wire subject
# of the registry, but published like one, so that an upgraded engine still reads the archive
# (finished instances, kept for ever) that an older one wrote.
SNAPSHOT_RECORD = "baton.snapshots.Snapshot"
SNAPSHOT_SUBJECT = "baton.snapshots-value"
HISTORY_SUBJECTS: dict[str, str] = {**SUBJECTS, SNAPSHOT_RECORD: SNAPSHOT_SUBJECT}
EVENT_NAMESPACE = "baton.events"
COMMAND_NAMESPACE = "baton.commands"

_ID_MASK = 0x7FFF_FFFF

Schema: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One version of a subject, as the schema registry serves it."""

    id: int
    subject: str
    version: int
    schema_json: str


def schema_id(schema: Schema) -> int:
    """The deterministic id of a (parsed, self-contained) schema."""
    canonical = to_parsing_canonical_form(schema).encode("utf-8")
    return int.from_bytes(hashlib.sha256(canonical).digest()[:4], "big") & _ID_MASK


def expanded_json(schema: Schema, *, indent: int | None = None) -> str:
    """A parsed schema as self-contained JSON: every named type inlined at its first use."""
    # Sorted keys: the registry text must be the same in every process (ids already are).
    return json.dumps(_strip_fastavro_keys(schema), indent=indent, sort_keys=True)


def _strip_fastavro_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_fastavro_keys(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_fastavro_keys(v) for v in node]
    return node


def load_schema_file(path: Path) -> Schema:
    """Parse a schema file, resolving named types from ``<full name>.avsc`` files beside it."""
    schema = load_schema(str(path))
    if not isinstance(schema, dict):
        raise SchemaError(f"{path} is not a named record or enum")
    return schema


def history_files(history: Path) -> list[tuple[int, Path]]:
    """The published versions in `history`, as (version, path) from 1 up; SchemaError for a
    misnamed file or a gap."""
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
    for record, subject in HISTORY_SUBJECTS.items():
        current = load_schema_file(directory / f"{record}.avsc")
        history = directory / "history" / subject
        versions = history_files(history)
        known = {schema_id(load_schema_file(p)) for _, p in versions}
        if schema_id(current) in known:
            continue
        history.mkdir(parents=True, exist_ok=True)
        path = history / f"v{len(versions) + 1}.avsc"
        path.write_text(expanded_json(current, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
