"""An in-process engine on real Kafka, and a scripted worker, for engine integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from services.adapters.avro import Codec
from services.adapters.kafka import (
    TOPIC_EVENTS,
    ensure_topics,
    new_consumer,
    new_producer,
    partition_for,
    task_topic,
)
from services.adapters.publish import send_command
from services.domain.instance.decide import decide_instance
from services.domain.kernel.statuses import FailureKind
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    Command,
    PushWorkflow,
    ReportAttemptFailed,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    StartInstance,
)
from services.domain.protocol.events import Event
from services.domain.protocol.tasks import Task
from services.engine.engine import Engine
from services.engine.shard import Shard, now_micros
from services.engine.snapshots import SNAPSHOT_INTERVAL_S

PARTITIONS = 8


@contextlib.asynccontextmanager
async def running_engine(
    bootstrap: str,
    engine_id: str = "itest-engine-1",
    heartbeat_timeout_s: float = 30.0,
    snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
) -> AsyncIterator[Engine]:
    engine = Engine(
        bootstrap,
        PARTITIONS,
        Codec(),
        engine_id,
        heartbeat_timeout_s,
        snapshot_interval_s=snapshot_interval_s,
    )
    await engine.start()
    task = asyncio.create_task(engine.run())
    try:
        await engine.wait_assigned()
        yield engine
    finally:
        engine.stop()
        await task
        await engine.close()


@dataclass
class EventLog:
    """Every committed event, read as any downstream subscriber would (read_committed)."""

    events: list[Event] = field(default_factory=list)

    def of(self, instance_id: str) -> list[Event]:
        return [e for e in self.events if e.instance_id == instance_id]

    def types(self, instance_id: str) -> list[str]:
        return [e.type for e in self.of(instance_id)]


@contextlib.asynccontextmanager
async def following_events(bootstrap: str) -> AsyncIterator[EventLog]:
    log = EventLog()
    codec = Codec()
    consumer = new_consumer(bootstrap, None, TOPIC_EVENTS, auto_offset_reset="earliest")
    await consumer.start()

    async def pump() -> None:
        async for record in consumer:
            log.events.append(codec.decode_event(record.value))

    task = asyncio.create_task(pump())
    try:
        yield log
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


Behaviour = Callable[[Task], FailureKind | None]


@contextlib.asynccontextmanager
async def scripted_worker(
    bootstrap: str, queue: str, behaviour: Behaviour
) -> AsyncIterator[list[Task]]:
    """Reports Started then Succeeded, or Failed with the kind `behaviour` returns."""
    codec = Codec()
    seen: list[Task] = []
    consumer = new_consumer(bootstrap, f"itest-worker-{queue}", task_topic(queue))
    producer = new_producer(bootstrap)
    await consumer.start()
    await producer.start()

    async def work() -> None:
        async for record in consumer:
            t = codec.decode_task(record.value)
            seen.append(t)
            await send_command(
                producer, codec, ReportAttemptStarted(t.instance_id, t.step_id, t.attempt, "w")
            )
            kind = behaviour(t)
            if kind is None:
                report: Command = ReportAttemptSucceeded(t.instance_id, t.step_id, t.attempt, "{}")
            else:
                report = ReportAttemptFailed(t.instance_id, t.step_id, t.attempt, kind, "scripted")
            await send_command(producer, codec, report)
            await consumer.commit()

    task = asyncio.create_task(work())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()


async def prepare_topics(bootstrap: str, *queues: str) -> None:
    await ensure_topics(bootstrap, PARTITIONS, ["default", *queues])


def definition(workflow_id: str, steps: Sequence[Mapping[str, object]], **fields: object) -> str:
    return parse_workflow({"id": workflow_id, "steps": list(steps), **fields}).to_json()


async def start_instance(
    producer: AIOKafkaProducer, workflow_id: str, definition_json: str, params: str = "{}"
) -> str:
    iid = uuid.uuid4().hex
    await send_command(
        producer,
        Codec(),
        StartInstance(iid, workflow_id, 1, definition_json, params, "itest", None),
    )
    return iid


async def push(producer: AIOKafkaProducer, workflow_id: str, definition_json: str) -> None:
    await send_command(producer, Codec(), PushWorkflow(workflow_id, definition_json))


def instance_ids_on(partition: int, count: int) -> list[str]:
    """`count` fresh instance ids whose commands and events go to `partition`."""
    ids: list[str] = []
    while len(ids) < count:
        iid = uuid.uuid4().hex
        if partition_for(iid, PARTITIONS) == partition:
            ids.append(iid)
    return ids


async def write_long_partition(bootstrap: str, partition: int, instances: int) -> int:
    """A long history on events partition `partition`, as if an engine had written it:
    `instances` instances of a workflow whose one step sleeps for a day, each started (its
    events as the decider makes them). Returns how many events were written."""
    wf = definition("long-history", [{"id": "s", "type": "sleep", "duration": "1d"}])
    now = time.time_ns() // 1000
    template = decide_instance(
        None, StartInstance("template", "long-history", 1, wf, "{}", "itest"), now
    ).events
    codec = Codec()
    producer = new_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        pending = []
        for iid in instance_ids_on(partition, instances):
            for e in template:
                e = dataclasses.replace(e, event_id=f"{iid}:{e.seq}", instance_id=iid)
                pending.append(
                    await producer.send(
                        TOPIC_EVENTS, codec.encode_event(e), key=iid.encode(), partition=partition
                    )
                )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return instances * len(template)


@contextlib.asynccontextmanager
async def long_partition(bootstrap: str, partition: int, instances: int) -> AsyncIterator[int]:
    """`write_long_partition`, then, when the test is done, its records deleted (with all
    before them on that partition): every later engine on that broker would fold them too.
    Only on a broker of its own (the `history_kafka` fixture): baton.events is never deleted
    from where other tests' histories live."""
    written = await write_long_partition(bootstrap, partition, instances)
    tp = TopicPartition(TOPIC_EVENTS, partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        consumer = new_consumer(bootstrap, None)
        await consumer.start()
        try:
            end = (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
        yield written
        await admin.delete_records({tp: RecordsToDelete(end)})
    finally:
        await admin.close()


async def with_archived(shard: Shard, reference: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The shard's states, plus those of `reference`'s aggregates it holds only in its archive
    (read back): what compares with a full fold of its partition."""
    states = {name: dict(held) for name, held in shard.states.items()}
    for name, held in reference.items():
        for key in held.keys() - states[name].keys():
            state = await shard.archive.load(name, key) if shard.archive.holds(name, key) else None
            if state is not None:
                states[name][key] = state
    return states


async def full_fold(kafka: str, partition: int) -> Shard:
    """Partition `partition` folded from the log's start, snapshots and archive ignored: the
    truth a shard's memory (and archive) must match."""
    shard = Shard(partition, cast(Any, None), Codec(), "unused", 30.0, lambda _: None, PARTITIONS)
    await shard.load(kafka, now_micros())
    return shard
