"""Finished instances leave the engine's memory, on real Kafka: they are archived at the next
snapshot flush, and any command that names one later — a duplicate start, a restart, a late
report — is decided on its archived state exactly as it would have been in memory, before and
after a restart of the engine, and also when the revival is in the tail a recovery folds."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.avro import Codec
from services.adapters.avro.framing import frame_header
from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.kafka import TOPIC_ARCHIVE, TOPIC_DEADLETTER, new_consumer
from services.adapters.publish import send_command
from services.domain.kernel.statuses import RestartMode
from services.domain.protocol.commands import (
    Command,
    ReportAttemptSucceeded,
    RestartInstance,
    StartInstance,
)
from services.engine.engine import Engine
from services.engine.shard import Shard
from services.engine.snapshots import state_key
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    EventLog,
    definition,
    following_events,
    full_fold,
    instance_ids_on,
    running_engine,
    scripted_worker,
)

pytestmark = pytest.mark.integration

OFTEN = 0.1  # seconds between a busy shard's snapshots here
NEVER = 3600.0  # a snapshot interval no test waits for: snapshots read, none written
HOT = 5  # the partition the instances of these tests go to
WF = definition("archived", [{"id": "a", "type": "noop"}])
CODEC_SCHEMA_ID = SnapshotCodec().schema_id


async def send(producer: AIOKafkaProducer, *cmds: Command) -> None:
    for cmd in cmds:
        await send_command(producer, Codec(), cmd)


def succeed(_: object) -> None:
    return None


def start(iid: str) -> StartInstance:
    return StartInstance(iid, "archived", 1, WF, "{}", "t", None)


async def finished_and_archived(
    producer: AIOKafkaProducer, log: EventLog, engine: Engine, count: int
) -> list[str]:
    """`count` instances run to their end on HOT, then are out of the engine's memory."""
    ids = instance_ids_on(HOT, count)
    await send(producer, *(start(i) for i in ids))
    await wait_until_async(
        lambda: all("InstanceSucceeded" in log.types(i) for i in ids), timeout=30
    )
    await wait_until_async(
        lambda: (
            HOT in engine.shards
            and not set(ids) & set(engine.shards[HOT].instances)
            and len(engine.shards[HOT].archive) >= count
        ),
        timeout=30,
        message="the finished instances leave memory",
    )
    return ids


async def after(producer: AIOKafkaProducer, log: EventLog) -> None:
    """Until a fresh instance on HOT has succeeded: every command sent to HOT before it has
    been decided (one partition decides in order)."""
    (probe,) = instance_ids_on(HOT, 1)
    await send(producer, start(probe))
    await wait_until_async(lambda: "InstanceSucceeded" in log.types(probe), timeout=30)


async def state_of(shard: Shard, iid: str) -> Any:
    """An instance's state in the engine: in memory, or read back from the archive."""
    if iid in shard.instances:
        return shard.instances[iid]
    return await shard.archive.load("instance", iid)


async def test_commands_for_archived_instances_are_decided_as_in_memory(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    async with following_events(kafka) as log, scripted_worker(kafka, "default", succeed):
        async with running_engine(kafka, "itest-archive-1", snapshot_interval_s=OFTEN) as engine:
            dup, restarted, late, *rest = await finished_and_archived(producer, log, engine, 12)
            await send(
                producer,
                start(dup),  # a duplicate start: decides nothing
                RestartInstance(restarted, RestartMode.FROM_BEGINNING),
                ReportAttemptSucceeded(late, "a", 1),  # a late report: ignored
            )
            await after(producer, log)
            assert log.types(dup).count("InstanceStarted") == 1
            assert log.types(late).count("InstanceSucceeded") == 1
            await wait_until_async(
                lambda: log.types(restarted).count("InstanceSucceeded") == 2, timeout=30
            )
            assert "InstanceRestarted" in log.types(restarted)
        # A new owner: the index comes back with the snapshot, the archive is read on demand.
        async with running_engine(kafka, "itest-archive-2", snapshot_interval_s=OFTEN) as engine:
            await wait_until_async(lambda: HOT in engine.shards, timeout=60)
            shard = engine.shards[HOT]
            assert shard.snapshot_records is not None
            assert len(shard.archive) >= 12
            assert not set(rest) & set(shard.instances)
            await send(producer, RestartInstance(rest[0], RestartMode.FROM_BEGINNING))
            await wait_until_async(
                lambda: log.types(rest[0]).count("InstanceSucceeded") == 2, timeout=30
            )
            reference = await full_fold(kafka, HOT)
            for iid in [dup, restarted, late, *rest]:
                assert await state_of(shard, iid) == reference.instances[iid], iid


async def test_a_revival_in_the_tail_of_a_recovery_is_folded_onto_the_archived_state(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    async with following_events(kafka) as log, scripted_worker(kafka, "default", succeed):
        async with running_engine(kafka, "itest-archive-3", snapshot_interval_s=OFTEN) as engine:
            (iid,) = await finished_and_archived(producer, log, engine, 1)
        # Restarted by an engine that writes no snapshot: its events are all the next one's tail.
        async with running_engine(kafka, "itest-archive-4", snapshot_interval_s=NEVER):
            await send(producer, RestartInstance(iid, RestartMode.FROM_BEGINNING))
            await wait_until_async(
                lambda: log.types(iid).count("InstanceSucceeded") == 2, timeout=30
            )
        async with running_engine(kafka, "itest-archive-5", snapshot_interval_s=OFTEN) as engine:
            await wait_until_async(lambda: HOT in engine.shards, timeout=60)
            shard = engine.shards[HOT]
            assert shard.snapshot_records is not None
            reference = await full_fold(kafka, HOT)
            assert await state_of(shard, iid) == reference.instances[iid]
            assert shard.instances.get(iid, reference.instances[iid]).run == 2


async def test_a_command_for_an_archived_state_this_code_cannot_read_is_dead_lettered(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """What a newer Baton archived (a schema id this code does not know) is not guessed at:
    the command that names it is dead-lettered with the reason, the partition goes on."""
    dead = new_consumer(kafka, None, TOPIC_DEADLETTER, auto_offset_reset="latest")
    await dead.start()
    await dead.seek_to_end()
    got: list[dict[str, bytes]] = []
    try:
        async with (
            following_events(kafka) as log,
            scripted_worker(kafka, "default", succeed),
            running_engine(kafka, "itest-archive-6") as engine,
        ):
            await after(producer, log)
            (ghost,) = instance_ids_on(HOT, 1)
            skey = state_key("instance", ghost)
            unknown = frame_header(CODEC_SCHEMA_ID ^ 1) + b"\x00" * 16
            sent = await producer.send_and_wait(TOPIC_ARCHIVE, unknown, key=skey, partition=HOT)
            # The index entry an archiving flush of that newer Baton would have left.
            engine.shards[HOT].archive.add([(skey, sent.offset)], 0)
            await send(producer, RestartInstance(ghost, RestartMode.FROM_BEGINNING))
            await after(producer, log)  # the partition goes on

            async def dead_lettered() -> bool:
                batch = await dead.getmany(timeout_ms=200)
                for records in batch.values():
                    got.extend(dict(r.headers) for r in records if r.key == ghost.encode())
                return bool(got)

            await wait_until_async(dead_lettered, timeout=10)
            assert engine.shards[HOT].failed is None
            assert log.types(ghost) == []
    finally:
        await dead.stop()
    assert got[0]["reason"].startswith(
        b"unreadable: the archived state of instance " + ghost.encode()
    )
    assert b"unknown schema id" in got[0]["reason"]
