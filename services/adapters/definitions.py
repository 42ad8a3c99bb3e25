"""Definitions by reference: an `InstanceStarted` names its definition by hash, and the text is
stored once, in `baton.definitions`.

Every `InstanceStarted` used to carry its instance's whole definition (canonical JSON, often
~30 KB, up to 256 KiB) on `baton.events`, which is kept for ever: once per instance. The
engine now writes each distinct text once to the compacted topic `baton.definitions` (one
partition; key: the text's SHA-256 in hex; value: the text, UTF-8), in the same transaction as
the first event that refers to it, and the event carries only the hash (`definition_hash`,
with `definition` empty). Older events, which embed their definition, read as before.

Content-addressed, so hostile records cannot mislead: a reader keeps a record only when its
value hashes to its key (anything else on the topic is ignored, and logged), so each key can
only ever hold the one text, and compaction keeping "the latest" changes nothing. A reader
resolves a hash by reading the topic to its end (read_committed, like every Baton reader):
the definition commits with, or before, the first event that names it, so a reader holding
that event finds it. Every reader of events that needs a definition (the engine's fold, the
projector, an auditor) resolves it here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from aiokafka import TopicPartition

from services.adapters.kafka import TOPIC_DEFINITIONS, started_consumer
from services.domain.kernel.errors import CorruptLog
from services.domain.protocol.events import Event, InstanceQueued, InstanceStarted

log = logging.getLogger(__name__)

DEFINITIONS_TP = TopicPartition(TOPIC_DEFINITIONS, 0)
# A definition is at most 256 KiB (the DSL's bound); a record far beyond that is not one.
MAX_DEFINITION_BYTES = 1 << 20
# The events that carry an instance's definition, and so name it by hash on the log.
REFERRING = (InstanceStarted, InstanceQueued)


def definition_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def by_reference(event: Event) -> tuple[Event, tuple[str, str] | None]:
    """The event as the log keeps it, and the (hash, text) it refers to: an `InstanceStarted`
    or `InstanceQueued` that embeds its definition becomes one that names it; any other event
    is itself."""
    p = event.payload
    if not isinstance(p, REFERRING) or not p.definition:
        return event, None
    digest = definition_hash(p.definition)
    wire = dataclasses.replace(p, definition="", definition_hash=digest)
    return dataclasses.replace(event, payload=wire), (digest, p.definition)


def names_its_definition(event: Event) -> bool:
    """The event refers to a definition it does not carry (resolve it before folding)."""
    p = event.payload
    return isinstance(p, REFERRING) and not p.definition and bool(p.definition_hash)


class DefinitionReader:
    """The definitions this process has read from `baton.definitions`, by hash; read on to the
    topic's end when an event names one not seen yet."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.known: dict[str, str] = {}
        self._position = 0

    async def resolve(self, event: Event) -> Event:
        """`event` with its definition's text in place (any other event as it is); CorruptLog
        when the topic holds no such definition (deleted, or a log from elsewhere)."""
        if not names_its_definition(event):
            return event
        p = event.payload
        assert isinstance(p, REFERRING)
        text = self.known.get(p.definition_hash)
        if text is None:
            await self._read_to_end()
            text = self.known.get(p.definition_hash)
        if text is None:
            raise CorruptLog(
                f"{event.event_id}: definition {p.definition_hash} is not in {TOPIC_DEFINITIONS}"
            )
        return dataclasses.replace(event, payload=dataclasses.replace(p, definition=text))

    async def _read_to_end(self) -> None:
        async with started_consumer(self.bootstrap, None) as consumer:
            consumer.assign([DEFINITIONS_TP])
            end = (await consumer.end_offsets([DEFINITIONS_TP]))[DEFINITIONS_TP]
            consumer.seek(DEFINITIONS_TP, self._position)
            while await consumer.position(DEFINITIONS_TP) < end:
                batch = await consumer.getmany(DEFINITIONS_TP, timeout_ms=500, max_records=500)
                for record in batch.get(DEFINITIONS_TP, []):
                    self._take(record.key, record.value, record.offset)
            self._position = max(self._position, end)

    def _take(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None or value is None or len(value) > MAX_DEFINITION_BYTES:
            log.warning("%s@%d is no definition record; ignored", TOPIC_DEFINITIONS, offset)
            return
        try:
            digest, text = key.decode("ascii"), value.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("%s@%d is not text; ignored", TOPIC_DEFINITIONS, offset)
            return
        if definition_hash(text) != digest:
            log.warning(
                "%s@%d: its value does not hash to its key; ignored", TOPIC_DEFINITIONS, offset
            )
            return
        self.known.setdefault(digest, text)
