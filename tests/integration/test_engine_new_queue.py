"""A queue used for the first time: its topic is created without stalling any shard."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.kafka import partition_for
from services.domain.protocol.events import StepAttemptCreated
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    PARTITIONS,
    definition,
    following_events,
    running_engine,
    start_instance,
)

pytestmark = pytest.mark.integration

# Well below the minute the stall took (a broker's transaction timeout and more), well above
# what a topic's creation takes on a loaded machine.
NO_STALL_S = 10.0


async def test_a_first_use_of_a_queue_costs_no_stall(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """Instances on every partition, all naming a queue whose topic does not exist yet: each
    one's task (and so its events, in the same transaction) is out within NO_STALL_S.

    The stall needed a shard producer that had learnt the cluster's topics from a full
    metadata fetch (aiokafka makes one when the transaction coordinator is still loading, as
    on a fresh broker, or when a connection drops) before its first send. The test makes that
    fetch itself, so it does not depend on the broker's age."""
    queue = f"fresh-{uuid.uuid4().hex[:8]}"
    wf = definition("fresh-queue", [{"id": "s", "type": "noop", "queue": queue}])
    async with following_events(kafka) as log, running_engine(kafka) as engine:
        for shard in engine.shards.values():
            await shard.producer.client.force_metadata_update()
        iids: list[str] = []
        t0 = time.monotonic()
        while {partition_for(i, PARTITIONS) for i in iids} != set(range(PARTITIONS)):
            iids.append(await start_instance(producer, "fresh-queue", wf))

        def created() -> set[str]:
            return {
                e.instance_id
                for e in log.events
                if isinstance(e.payload, StepAttemptCreated) and e.instance_id is not None
            }

        await wait_until_async(
            lambda: created() >= set(iids), timeout=NO_STALL_S, message="every task out"
        )
        elapsed = time.monotonic() - t0
    print(f"{len(iids)} instances on a new queue: every task out in {elapsed:.2f} s")
