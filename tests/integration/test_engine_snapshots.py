"""Snapshots on real Kafka: an engine writes its shards' states to baton.snapshots in its own
transactions; the next owner restores them and folds only the events after the checkpoint,
and ends with exactly the state a fold of the whole log gives. A snapshot that cannot be read
is discarded and the log folded instead."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.avro import Codec
from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.kafka import TOPIC_SNAPSHOTS
from services.adapters.publish import send_command
from services.domain.protocol.commands import StartInstance
from services.engine.engine import Engine
from services.engine.snapshots import CHECKPOINT_KEY
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    definition,
    following_events,
    full_fold,
    instance_ids_on,
    running_engine,
    with_archived,
)

pytestmark = pytest.mark.integration

OFTEN = 0.1  # seconds between a busy shard's snapshots here
HOT = 3  # the partition the instances of these tests go to


async def start_on_hot(producer: AIOKafkaProducer, workflow: str, count: int) -> list[str]:
    wf = definition(
        workflow,
        [
            {"id": "a", "type": "noop", "next": ["s"]},
            {"id": "s", "type": "sleep", "duration": "1h"},
        ],
    )
    ids = instance_ids_on(HOT, count)
    for iid in ids:
        await send_command(producer, Codec(), StartInstance(iid, workflow, 1, wf, "{}", "t", None))
    return ids


def settled(engine: Engine) -> bool:
    """Every shard's changes are in a committed snapshot."""
    return bool(engine.shards) and all(
        not s.dirty and (s.committer is None or s.committer.done()) for s in engine.shards.values()
    )


async def test_the_next_owner_restores_the_snapshot_and_folds_only_the_tail(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    async with following_events(kafka) as log:
        async with running_engine(kafka, "itest-snap-1", snapshot_interval_s=OFTEN) as engine:
            ids = await start_on_hot(producer, "snapshotted", 30)
            await wait_until_async(
                lambda: all("StepAttemptCreated" in log.types(i) for i in ids), timeout=30
            )
            await wait_until_async(lambda: settled(engine), timeout=30)
        # A tail after the snapshot: started with no engine up, decided by the next one.
        tail = await start_on_hot(producer, "snapshotted", 5)
        async with running_engine(kafka, "itest-snap-2", snapshot_interval_s=OFTEN) as engine:
            await wait_until_async(lambda: HOT in engine.shards, timeout=60)
            shard = engine.shards[HOT]
            assert shard.snapshot_records is not None  # restored, not folded from offset 0
            await wait_until_async(
                lambda: all("StepAttemptCreated" in log.types(i) for i in tail), timeout=30
            )
            await wait_until_async(lambda: settled(engine), timeout=30)
            reference = await full_fold(kafka, HOT)
            assert shard.folded < reference.folded
            assert set(ids + tail) <= set(shard.instances)
            assert await with_archived(shard, reference.states) == reference.states


async def test_an_unreadable_snapshot_is_discarded_and_the_log_folded(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    async with (
        following_events(kafka) as log,
        running_engine(kafka, "itest-snap-3", snapshot_interval_s=OFTEN) as engine,
    ):
        ids = await start_on_hot(producer, "snapshot-spoiled", 3)
        await wait_until_async(
            lambda: all("StepAttemptCreated" in log.types(i) for i in ids), timeout=30
        )
        await wait_until_async(lambda: settled(engine), timeout=30)
    # Another Baton's checkpoint, as far as this one can tell: a schema id it does not know.
    spoiled = bytes([0]) + (SnapshotCodec().schema_id ^ 1).to_bytes(4, "big") + b"\x02\x04\x06"
    await producer.send_and_wait(TOPIC_SNAPSHOTS, spoiled, key=CHECKPOINT_KEY, partition=HOT)
    async with running_engine(kafka, "itest-snap-4", snapshot_interval_s=OFTEN) as engine:
        await wait_until_async(lambda: HOT in engine.shards, timeout=60)
        shard = engine.shards[HOT]
        assert shard.snapshot_records is None
        reference = await full_fold(kafka, HOT)
        assert shard.folded == reference.folded
        assert await with_archived(shard, reference.states) == reference.states
        # ... and it writes a readable snapshot again: the one after it restores.
        await wait_until_async(lambda: settled(engine), timeout=30)
    async with running_engine(kafka, "itest-snap-5", snapshot_interval_s=OFTEN) as engine:
        await wait_until_async(lambda: HOT in engine.shards, timeout=60)
        assert engine.shards[HOT].snapshot_records is not None
