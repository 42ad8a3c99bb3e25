"""The broker goes away just as the projector dead-letters a record: the send waits out the
outage (retried with back-off) and the projector stays up; the offsets that skip the record
are stored only once its dead letter is on the broker. Before, the send's KafkaTimeoutError
(after the producer's 40 s request timeout) escaped the loop and the projector exited.

In-process projector on its own events topic (tests/integration/projector_harness.py), real
Kafka stopped and started with infra's scripts, real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import TopicPartition

from services.adapters import infra
from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics
from services.adapters.settings import Settings
from services.projector.consumer import PROJECTOR_NAME, Projector
from services.projector.offsets import stored_offsets
from tests.helpers import wait_until_async
from tests.integration.projector_harness import (
    EVENTS,
    create_topic,
    dead_letters,
    migrated_pool,
    produce,
    produce_garbage,
    running,
    wait_caught_up,
)
from tests.integration.projector_scenario import build_scenario

pytestmark = pytest.mark.chaos

# Past the producer's request timeout (aiokafka's default, 40 s), after which a send to a
# broker that is away fails: that failure is what the projector must wait out.
OUTAGE_S = 45.0


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(postgres, "baton_dl_outage") as pool:
        yield pool


def _alive(projector: Projector) -> bool:
    # `run()` clears its consumer on the way out, whatever ended it.
    return projector._consumer is not None


async def test_a_dead_letter_sent_during_a_broker_outage_waits_it_out(
    kafka: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    await ensure_topics(kafka, settings.partitions)
    await create_topic(kafka, EVENTS, settings.partitions)
    codec = Codec()
    sc = build_scenario()
    await produce(kafka, codec, list(sc.events()))
    run = sc.restarted

    async with running(kafka, pool) as projector:
        await wait_caught_up(projector)
        # The topic is shared with the integration tests, whose garbage is dead-lettered too.
        earlier = projector.dead_lettered
        stopped = False
        # The projector is held between two batches (the lock its loop and a rebalance
        # take) while the garbage is fetched into its consumer's buffer and the broker stops;
        # once released, its next batch dead-letters the garbage with the broker away.
        consumer = projector._consumer
        assert consumer is not None
        await projector._lock.acquire()
        try:
            partition, offset = await produce_garbage(kafka, run.instance_id)
            tp = TopicPartition(EVENTS, partition)

            def buffered() -> bool:
                stable = consumer.last_stable_offset(tp)
                return stable is not None and stable > offset

            await wait_until_async(buffered, 60, message="the garbage is fetched")
            await asyncio.to_thread(infra.stop_kafka, settings)
            stopped = True
        finally:
            projector._lock.release()
        try:
            await asyncio.sleep(OUTAGE_S)  # the outage itself, not a synchronisation
            assert _alive(projector), "the projector exited during the outage"
            async with pool.acquire() as conn:
                stored = await stored_offsets(conn, PROJECTOR_NAME, EVENTS)
            assert stored.get(partition, 0) <= offset, "offsets stored before the dead letter"
            assert projector.dead_lettered == earlier
        finally:
            if stopped:
                await asyncio.to_thread(infra.start_kafka, settings)
                await asyncio.to_thread(infra.wait_kafka, settings, 90)

        async def skipped() -> bool:
            async with pool.acquire() as conn:
                stored = await stored_offsets(conn, PROJECTOR_NAME, EVENTS)
            return stored.get(partition, 0) > offset

        await wait_until_async(skipped, 120, message="the garbage's offset is stored as consumed")
        assert projector.dead_lettered == earlier + 1
        assert _alive(projector)
    # At least once: a send whose answer was lost in the outage may have gone twice.
    assert len(await dead_letters(kafka, partition, offset)) >= 1
