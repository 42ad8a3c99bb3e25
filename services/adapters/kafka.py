"""Kafka: topic names and settings, and the clients every process builds the same way.

Every Kafka client of Baton is built here (`new_producer`, `new_transactional_producer`,
`new_consumer`, `new_admin`) from the keyword sets named below; a caller passes only what is
its own (a group member id, a poll size) as overrides.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Final

import aiokafka.producer.sender
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from services.domain.protocol.routing import route_key

log = logging.getLogger(__name__)

TOPIC_COMMANDS = "baton.commands"
TOPIC_EVENTS = "baton.events"
TOPIC_DEADLETTER = "baton.deadletter"
# Notifications for workers (copies of events that cancel running attempts); every worker
# reads all of it, so it has one partition. Not the log: the events topic is.
TOPIC_CONTROL = "baton.control"
# The engine's snapshots: each shard's aggregates, the latest state per key, written in the
# shard's transactions (a cache of the fold; see docs/architecture.md, Snapshots).
TOPIC_SNAPSHOTS = "baton.snapshots"
# Finished aggregates' final states, out of the engine's memory (services/engine/archive.py):
# compacted, co-partitioned, read back one record at a time when a command addresses one.
TOPIC_ARCHIVE = "baton.archive"
# Every definition an event refers to by hash, once (services/adapters/definitions.py):
# content-addressed, compacted, kept for ever beside the events.
TOPIC_DEFINITIONS = "baton.definitions"
DEFAULT_QUEUE = "default"


def task_topic(queue: str) -> str:
    return f"baton.tasks.{queue}"


def _topic_specs(partitions: int, queues: Iterable[str]) -> list[NewTopic]:
    # Commands and events are co-partitioned: same count, same key -> same partition number,
    # so the engine shard that owns commands partition p owns events partition p.
    specs = [
        NewTopic(TOPIC_COMMANDS, partitions, 1, topic_configs={"retention.ms": "604800000"}),
        # The source of truth: kept forever.
        NewTopic(
            TOPIC_EVENTS,
            partitions,
            1,
            topic_configs={"retention.ms": "-1", "retention.bytes": "-1"},
        ),
        # Co-partitioned too: shard p writes snapshots partition p. Compacted: recovery reads
        # about one record per aggregate held, whatever the history's length.
        NewTopic(
            TOPIC_SNAPSHOTS,
            partitions,
            1,
            topic_configs={
                "cleanup.policy": "compact",
                "segment.ms": "600000",
                "min.cleanable.dirty.ratio": "0.2",
                "max.message.bytes": "8388608",
            },
        ),
        NewTopic(
            TOPIC_ARCHIVE,
            partitions,
            1,
            topic_configs={
                "cleanup.policy": "compact",
                "segment.ms": "3600000",
                "max.message.bytes": "8388608",
            },
        ),
        # One partition: every reader of events reads all of it (a record per definition).
        NewTopic(
            TOPIC_DEFINITIONS,
            1,
            1,
            topic_configs={
                "cleanup.policy": "compact",
                "retention.ms": "-1",
                "max.message.bytes": "8388608",
            },
        ),
        NewTopic(TOPIC_DEADLETTER, 1, 1, topic_configs={"retention.ms": "-1"}),
        NewTopic(TOPIC_CONTROL, 1, 1, topic_configs={"retention.ms": "86400000"}),
    ]
    specs += [
        NewTopic(task_topic(q), partitions, 1, topic_configs={"retention.ms": "604800000"})
        for q in queues
    ]
    return specs


async def ensure_topics(
    bootstrap: str, partitions: int, queues: Iterable[str] = (DEFAULT_QUEUE,)
) -> None:
    """Create Baton's topics if missing (idempotent, safe to race with other processes)."""
    admin = new_admin(bootstrap)
    await admin.start()
    try:
        specs = _topic_specs(partitions, queues)
        existing = set(await admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        if missing:
            # Another process may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        # Every topic asked for, not only those created here: one that another process has
        # just created is listed before its partitions have leaders.
        await _wait_for_metadata(admin, [t.name for t in specs])
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Until every partition of every new topic has a leader: a consumer group that assigns
    partitions before that sees none, and would not look again until its next metadata
    refresh."""
    for _ in range(200):
        if not names:
            return
        described = await admin.describe_topics(names)
        ready = {
            t["topic"]
            for t in described
            if t.get("error_code", 0) == 0
            and t.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in t["partitions"])
        }
        if ready >= set(names):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"topics {names} have no partition leaders yet")


async def track_topics(producer: AIOKafkaProducer, topics: Iterable[str]) -> None:
    """Keep `topics` in the producer's metadata for as long as it lives; call before the
    first transaction (or batch) that writes them, never while a batch is pending.

    aiokafka's client refreshes only the topics it tracks (all of them while it tracks none),
    and it tracks a topic only when a send finds it unknown. A topic it learnt from a full
    refresh (one is made when the transaction coordinator is still loading, as on a fresh
    broker, or when a connection drops) stays untracked; the first send to a new topic (a new
    queue's) then narrows every refresh to the tracked ones, the untracked topics vanish from
    the metadata, and a record already appended for one of them waits for a leader the client
    no longer knows until request_timeout_ms (40 s). In an engine transaction that outlasts
    the broker's transaction timeout: the broker aborts it and the shard is fenced."""
    for topic in topics:
        await producer.client.add_topic(topic)  # a refresh that includes it (at once if known)


def partition_for(key: str, partitions: int) -> int:
    """The partition of an aggregate id: Kafka's default (murmur2) hash of its route
    (`route_key`), so the ids sharing a route share a partition."""
    return _route_partition(route_key(key), partitions)


@functools.lru_cache(maxsize=65_536)
def _route_partition(route: str, partitions: int) -> int:
    # aiokafka's murmur2 is pure Python (~14 µs for an instance id here), and most records
    # share a few routes (a workflow's instances route by its id): hash each route once.
    return (int(murmur2(route.encode())) & 0x7FFFFFFF) % partitions


def route_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's partitioner hook: `partition_for` for every keyed record Baton produces."""
    if key is None:
        return DefaultPartitioner()(key, all_partitions, available)  # type: ignore[no-any-return]
    return all_partitions[partition_for(key.decode(), len(all_partitions))]


# Idempotent, acks=all. Linger is short: latency matters more than batch size here.
PRODUCER_SETTINGS: Final[Mapping[str, Any]] = {
    "partitioner": route_partitioner,
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 0,
    "max_batch_size": 1 << 20,
    "max_request_size": 4 << 20,
}


def new_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer with `PRODUCER_SETTINGS`, `overrides` on top; not started."""
    return AIOKafkaProducer(**{"bootstrap_servers": bootstrap, **PRODUCER_SETTINGS, **overrides})


# Back-to-back transactions (KAFKA-5477). The coordinator answers EndTxn before it has written
# the commit markers, and refuses the next transaction's AddPartitionsToTxn (or
# AddOffsetsToTxn) with CONCURRENT_TRANSACTIONS until it has. aiokafka then waits a fixed
# 20 ms (`BACKOFF_OVERRIDE`, or `retry_backoff_ms`, 100 ms, for offsets). This sets a module
# constant of aiokafka's, for the whole process (engines are the only transactional clients). On one broker the
# markers take a millisecond or two, so the engine, whose shards commit transaction after
# transaction under load, would spend most of its time waiting. Retrying after 2 ms took a
# back-to-back transaction from 24 ms to 5 ms at p50 (bench/floor.py, "back-to-back").
CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002
# Every other retry of these producers (metadata, coordinator lookups, AddOffsetsToTxn refused
# the same way): shorter than aiokafka's 100 ms, long enough not to storm a broker in trouble.
TRANSACTIONAL_RETRY_BACKOFF_MS = 20


def _shorten_concurrent_transactions_backoff() -> None:
    if not hasattr(aiokafka.producer.sender, "BACKOFF_OVERRIDE"):
        # A newer aiokafka without the constant: it chose its own behaviour; keep it.
        log.warning("aiokafka has no BACKOFF_OVERRIDE; transactions keep its default back-off")
        return
    aiokafka.producer.sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_BACKOFF_S


# What the engine's producers add to `PRODUCER_SETTINGS` (besides their transactional id).
TRANSACTIONAL_SETTINGS: Final[Mapping[str, Any]] = {
    "transaction_timeout_ms": 30000,
    "retry_backoff_ms": TRANSACTIONAL_RETRY_BACKOFF_MS,
}


def new_transactional_producer(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    """A producer of `TRANSACTIONAL_SETTINGS`; shortens aiokafka's back-off between
    back-to-back transactions for the whole process (see above). Not started."""
    _shorten_concurrent_transactions_backoff()
    return new_producer(bootstrap, transactional_id=transactional_id, **TRANSACTIONAL_SETTINGS)


# read_committed: aborted engine transactions are never seen. Offsets are committed
# explicitly by each process after its effect is durable (never automatically).
CONSUMER_SETTINGS: Final[Mapping[str, Any]] = {
    "isolation_level": "read_committed",
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 10,
    "max_partition_fetch_bytes": 4 << 20,
    "session_timeout_ms": 10000,
    "heartbeat_interval_ms": 1000,
    # Subscriptions notice new topics (and their partitions) within seconds, not minutes.
    "metadata_max_age_ms": 5000,
}


def new_consumer(
    bootstrap: str, group_id: str | None, *topics: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with `CONSUMER_SETTINGS`, `overrides` on top, in group `group_id` (None: no
    group, partitions assigned by hand or every partition of `topics`); not started."""
    kw = {"bootstrap_servers": bootstrap, "group_id": group_id, **CONSUMER_SETTINGS, **overrides}
    return AIOKafkaConsumer(*topics, **kw)


@contextlib.asynccontextmanager
async def started_consumer(
    bootstrap: str, group_id: str | None, *topics: str, **overrides: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    """`new_consumer`, started, and stopped on the way out, also when the start itself is
    cancelled or fails halfway (a stop or a revocation during a recovery read): a consumer
    started outside the `try` would leak its connections then."""
    consumer = new_consumer(bootstrap, group_id, *topics, **overrides)
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


def new_admin(bootstrap: str, **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client with aiokafka's defaults, `overrides` on top; not started."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **overrides)


async def wait_for_kafka(bootstrap: str, timeout: float = 60.0) -> None:
    """Until the broker answers a metadata request, or raise TimeoutError."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = new_admin(bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaConnectionError, OSError) as err:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"Kafka at {bootstrap} did not answer: {err}") from err
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


MAX_REASON_BYTES = 4000


def derived_dead_letter_headers(partition: int, reason: str) -> list[tuple[str, bytes]]:
    """Why a command the engine derived itself (never on a topic) went to TOPIC_DEADLETTER."""
    return [
        ("reason", reason.encode()[:MAX_REASON_BYTES]),
        ("source_topic", b"engine"),
        ("source_partition", str(partition).encode()),
    ]


def dead_letter_headers(record: Any, reason: str) -> list[tuple[str, bytes]]:
    """Why a record of `record.topic` went to TOPIC_DEADLETTER, and where it came from."""
    return [
        ("reason", reason.encode()[:MAX_REASON_BYTES]),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]
