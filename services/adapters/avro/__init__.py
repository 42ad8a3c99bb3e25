"""The Avro wire format of events, commands and tasks (DESIGN §5).

Each message is Confluent-framed (``framing``): magic byte 0, the 4-byte big-endian schema
id, then the Avro binary body, so standard Kafka tooling can decode the topics given Baton's
registry endpoints.

Schemas live in ``schemas/`` as one named type per ``<full name>.avsc`` file; the three
top-level records (``baton.events.Event``, ``baton.commands.Command``, ``baton.tasks.Task``)
reference the others by name. A schema id is derived from the schema itself (``schemas``), so
ids survive a rebuilt database and every process agrees on them without a registry round trip.

Published versions are kept, fully expanded, under ``schemas/history/<subject>/v<N>.avsc``
(``subjects``). A message is decoded with its writer's schema resolved against today's reader
schema: schemas evolve by Avro reader/writer resolution (STYLE habit 8). After changing a
schema, run ``python -m services.adapters.avro`` to record the new version in the history.

The modules, by role: ``errors`` · ``schemas`` (files, ids, history) · ``records`` (dataclass
<-> record maps) · ``framing`` · ``subjects`` (every version loaded) · ``codec`` (``Codec``).
This package re-exports the names the processes and tests use.
"""

from services.adapters.avro.codec import Codec
from services.adapters.avro.errors import DecodeError, EncodeError, SchemaError
from services.adapters.avro.framing import HEADER_SIZE, MAGIC
from services.adapters.avro.schemas import (
    COMMAND_NAMESPACE,
    COMMAND_RECORD,
    DEFAULT_SCHEMA_DIR,
    EVENT_NAMESPACE,
    EVENT_RECORD,
    SUBJECTS,
    TASK_RECORD,
    RegisteredSchema,
    expanded_json,
    schema_id,
    snapshot_history,
)

__all__ = [
    "COMMAND_NAMESPACE",
    "COMMAND_RECORD",
    "DEFAULT_SCHEMA_DIR",
    "EVENT_NAMESPACE",
    "EVENT_RECORD",
    "HEADER_SIZE",
    "MAGIC",
    "SUBJECTS",
    "TASK_RECORD",
    "Codec",
    "DecodeError",
    "EncodeError",
    "RegisteredSchema",
    "SchemaError",
    "expanded_json",
    "schema_id",
    "snapshot_history",
]
