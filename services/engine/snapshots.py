"""A shard's snapshots: its aggregates' states in the compacted topic `baton.snapshots`,
partition p, written inside the shard's own transactions, so a snapshot and the events it
covers commit or abort together (the way Kafka Streams writes a state store's changelog).

A flush writes the states changed since the previous one, then a checkpoint: the events
offset from which recovery folds the rest. Recovery reads the partition (the latest record
per key), restores the states, and folds the events after the checkpoint, skipping those a
restored state already holds (by the aggregate's `seq`).

A snapshot is a cache of the fold, never the truth. A record that does not decode (another
Baton's schema, corruption) or does not restore discards the whole snapshot, with a warning,
and the shard folds its partition from the log's start instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from services.adapters.avro import DecodeError
from services.adapters.avro.snapshots import (
    Checkpoint,
    DefinitionRecord,
    SegmentRecord,
    SnapshotCodec,
    StateRecord,
)
from services.adapters.definitions import definition_hash
from services.adapters.kafka import TOPIC_ARCHIVE, TOPIC_SNAPSHOTS, started_consumer
from services.domain.decider import AGGREGATES
from services.engine.archive import chunks, segment

log = logging.getLogger(__name__)

CHECKPOINT_KEY = b"checkpoint"
DEFINITION_PREFIX = "definition:"
SEGMENT_PREFIX = "archive-index:"
# How often, at most, a busy shard writes the states it changed (BATON_SNAPSHOT_INTERVAL_MS).
SNAPSHOT_INTERVAL_S = 5.0
# A state larger than this is not written (the producer's request limit is 4 MiB): that
# flush is skipped and retried at the next interval, and recovery folds the longer tail.
MAX_STATE_BYTES = 2 << 20
# Encoding many states is CPU-bound: yield to the loop this often while writing them.
ENCODE_SLICE = 256

_BY_NAME = {a.name: a for a in AGGREGATES}


@dataclass(frozen=True, slots=True)
class Restored:
    """What a snapshot partition held: states by aggregate type and key, and the checkpoint
    they are complete up to."""

    states: dict[str, dict[str, Any]]
    checkpoint: Checkpoint
    records: int
    definitions: dict[str, str]  # the definitions the partition holds: hash -> text
    segments: list[bytes]  # the archive index's segments, in order (see archive.py)


@dataclass(frozen=True, slots=True)
class Capture:
    """The states to write, as they stood when the transaction that writes them took its
    outbox (states are immutable, so holding them is the snapshot), and the events offset
    below which everything they cover was already committed."""

    states: dict[tuple[str, str], Any]
    events_from: int
    commands_offset: int
    # Those that leave memory: written to the archive, and a tombstone here.
    archived: dict[tuple[str, str], Any] = field(default_factory=dict)
    # When each attempt running on a worker was last heard of (liveness.py), then.
    attempts_seen: tuple[tuple[str, str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Written:
    """What `send_snapshot` sent: the deliveries to wait for, and the archive index entries
    of the states archived (key, offset), which the shard's index takes once it commits."""

    deliveries: list[asyncio.Future[Any]]
    archived: list[tuple[bytes, int]]


def state_key(aggregate: str, key: str) -> bytes:
    return f"{aggregate}:{key}".encode()


def definition_key(digest: str) -> bytes:
    return f"{DEFINITION_PREFIX}{digest}".encode()


def segment_key(n: int) -> bytes:
    return f"{SEGMENT_PREFIX}{n}".encode()


async def read_snapshot(bootstrap: str, partition: int, codec: SnapshotCodec) -> Restored | None:
    """The snapshot of partition `partition`, or None: none yet, or one that cannot be used
    (logged, and the caller folds from the log's start)."""
    tp = TopicPartition(TOPIC_SNAPSHOTS, partition)
    # The latest value per key, still encoded: a superseded record (an older Baton's, one
    # compaction has not removed yet) is never decoded.
    latest: dict[bytes, bytes | None] = {}
    count = 0
    async with started_consumer(bootstrap, None) as consumer:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=2000)
            for record in batch.get(tp, []):
                count += 1
                latest[record.key] = record.value  # None: a tombstone, the aggregate left
            await asyncio.sleep(0)  # other shards decide meanwhile
    raw_checkpoint = latest.pop(CHECKPOINT_KEY, None)
    if raw_checkpoint is None:
        return None
    try:
        checkpoint = codec.decode(raw_checkpoint)
        if not isinstance(checkpoint, Checkpoint):
            raise DecodeError("the checkpoint key holds a state")
        definitions = _definitions(codec, latest)
        segments = _segments(codec, latest)
        states = _restore(codec, latest, definitions)
    except Exception as err:  # unreadable, or a record this code cannot restore: the log decides
        log.warning("p%d: snapshot unusable, folding the log instead: %r", partition, err)
        return None
    return Restored(states, checkpoint, count, definitions, segments)


def _segments(codec: SnapshotCodec, latest: dict[bytes, bytes | None]) -> list[bytes]:
    """The archive index's segments, taken out of `latest`, in order; DecodeError for a gap
    (a segment is never deleted, so a gap is a partition this code did not write)."""
    found: dict[int, bytes] = {}
    for raw_key in [k for k in latest if k.startswith(SEGMENT_PREFIX.encode())]:
        value = latest.pop(raw_key)
        n = raw_key[len(SEGMENT_PREFIX) :].decode()
        entry = codec.decode(value) if value is not None else None
        if not n.isdigit() or not isinstance(entry, SegmentRecord):
            raise DecodeError(f"snapshot key {raw_key!r} holds no archive index segment")
        found[int(n)] = entry.entries
    if sorted(found) != list(range(len(found))):
        raise DecodeError(f"archive index segments {sorted(found)} are not 0..n")
    return [found[n] for n in range(len(found))]


def restore_record(
    codec: SnapshotCodec, raw_key: bytes, value: bytes, definitions: dict[str, str]
) -> tuple[str, str, Any]:
    """One state record (of the snapshot or the archive) as (aggregate, key, state);
    DecodeError when it is not the record its key names, KeyError for a definition the
    partition does not hold."""
    entry = codec.decode(value)
    aggregate, sep, key = raw_key.decode().partition(":")
    if not isinstance(entry, StateRecord) or not sep or aggregate != entry.aggregate:
        raise DecodeError(f"snapshot key {raw_key!r} does not name its record")
    record = _resolved(entry.record, definitions)  # by reference: the text is stored once
    if aggregate == "workflow":
        record = {**record, "queue": [_resolved(q, definitions) for q in record["queue"]]}
    return aggregate, key, _BY_NAME[aggregate].restore(record)


def _definitions(codec: SnapshotCodec, latest: dict[bytes, bytes | None]) -> dict[str, str]:
    """The definition records, taken out of `latest`: hash -> text."""
    found: dict[str, str] = {}
    for raw_key in [k for k in latest if k.startswith(DEFINITION_PREFIX.encode())]:
        value = latest.pop(raw_key)
        if value is None:
            continue
        entry = codec.decode(value)
        if not isinstance(entry, DefinitionRecord) or raw_key != definition_key(entry.hash):
            raise DecodeError(f"snapshot key {raw_key!r} does not name its definition")
        found[entry.hash] = entry.definition
    return found


def _restore(
    codec: SnapshotCodec, latest: dict[bytes, bytes | None], definitions: dict[str, str]
) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {a.name: {} for a in AGGREGATES}
    for raw_key, value in latest.items():
        if value is None:
            continue
        aggregate, key, state = restore_record(codec, raw_key, value, definitions)
        states[aggregate][key] = state
    return states


async def send_snapshot(
    producer: AIOKafkaProducer,
    partition: int,
    codec: SnapshotCodec,
    capture: Capture,
    definitions: dict[str, str],
    segments: int,
) -> Written | None:
    """Write the captured states, the archived ones (to the archive, with a tombstone here
    and an index segment, `segments` being how many the partition holds), then the
    checkpoint, in the open transaction. An instance's definition goes by reference: its text
    is written once per partition (`definitions`: those already there, which this adds to).
    None (and nothing written) when a state is too large to write: the flush is skipped."""
    new_definitions: dict[str, str] = {}
    encoded = await _encode(partition, codec, capture, definitions, new_definitions)
    if encoded is None:
        return None
    records, archive = encoded
    records[:0] = [
        (definition_key(digest), codec.encode_definition(DefinitionRecord(digest, text)))
        for digest, text in new_definitions.items()
    ]
    sent = [
        await producer.send(TOPIC_SNAPSHOTS, data, key=skey, partition=partition)
        for skey, data in records
    ]
    archived = await _send_archived(producer, partition, codec, archive, segments, sent)
    checkpoint = Checkpoint(
        capture.events_from,
        capture.commands_offset,
        time.time_ns() // 1000,
        capture.attempts_seen,
    )
    data = codec.encode_checkpoint(checkpoint)
    sent.append(await producer.send(TOPIC_SNAPSHOTS, data, key=CHECKPOINT_KEY, partition=partition))
    # Known only once the transaction commits; a failed one rebuilds the shard, and this map.
    definitions.update(new_definitions)
    return Written(sent, archived)


async def _encode(
    partition: int,
    codec: SnapshotCodec,
    capture: Capture,
    definitions: dict[str, str],
    new_definitions: dict[str, str],
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]] | None:
    """The captured states as (key, record) pairs: for the snapshot, for the archive. None
    when one is over MAX_STATE_BYTES."""
    records: list[tuple[bytes, bytes]] = []
    archive: list[tuple[bytes, bytes]] = []
    for i, ((aggregate, key), state) in enumerate(
        [*capture.states.items(), *capture.archived.items()]
    ):
        data = encode_state_record(codec, aggregate, state, definitions, new_definitions)
        if len(data) > MAX_STATE_BYTES:
            log.warning(
                "p%d: %s %s is %d bytes, over the snapshot limit: snapshot skipped",
                partition,
                aggregate,
                key,
                len(data),
            )
            return None
        target = archive if (aggregate, key) in capture.archived else records
        target.append((state_key(aggregate, key), data))
        if i % ENCODE_SLICE == ENCODE_SLICE - 1:
            await asyncio.sleep(0)
    return records, archive


async def _send_archived(
    producer: AIOKafkaProducer,
    partition: int,
    codec: SnapshotCodec,
    archive: list[tuple[bytes, bytes]],
    segments: int,
    sent: list[asyncio.Future[Any]],
) -> list[tuple[bytes, int]]:
    """The archived states to the archive, a tombstone for each here, and the index segments
    that name their offsets (appended to `sent`). Returns the index entries."""
    if not archive:
        return []
    placed = [
        await producer.send(TOPIC_ARCHIVE, data, key=skey, partition=partition)
        for skey, data in archive
    ]
    # The index needs the offsets: known once the broker has the records (still inside the
    # transaction: an abort discards them with everything else).
    archived = [(skey, (await f).offset) for (skey, _), f in zip(archive, placed, strict=True)]
    for skey, _ in archive:  # out of the snapshot: the archive holds it now
        sent.append(await producer.send(TOPIC_SNAPSHOTS, None, key=skey, partition=partition))
    for n, part in enumerate(chunks(archived), start=segments):
        data = codec.encode_segment(SegmentRecord(segment(part)))
        sent.append(
            await producer.send(TOPIC_SNAPSHOTS, data, key=segment_key(n), partition=partition)
        )
    return archived


def encode_state_record(
    codec: SnapshotCodec,
    aggregate: str,
    state: Any,
    definitions: dict[str, str],
    new_definitions: dict[str, str],
) -> bytes:
    """A state's record, an instance's definition (and a queued start's) by reference
    (added to `new_definitions` when the partition does not hold it yet)."""
    record = _BY_NAME[aggregate].snapshot(state)
    if aggregate == "instance":
        record = _by_reference(record, definitions, new_definitions)
    elif aggregate == "workflow":
        queue = [_by_reference(q, definitions, new_definitions) for q in record["queue"]]
        record = {**record, "queue": queue}
    return codec.encode_state(aggregate, record)


def _by_reference(
    record: dict[str, Any], definitions: dict[str, str], new_definitions: dict[str, str]
) -> dict[str, Any]:
    text = record["definition"]
    digest = definition_hash(text)
    if digest not in definitions:
        new_definitions[digest] = text
    return {**record, "definition": "", "definition_hash": digest}


def _resolved(record: Mapping[str, Any], definitions: dict[str, str]) -> Mapping[str, Any]:
    ref = record.get("definition_hash")
    return {**record, "definition": definitions[ref]} if ref else record
