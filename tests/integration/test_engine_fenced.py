"""A fenced shard's transaction fails once, quietly: none of its futures' failures is left for
asyncio to report ("Future exception was never retrieved", a flood at each rebalance)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from services.adapters.avro import Codec
from services.adapters.kafka import new_transactional_producer
from services.domain.instance.decide import decide_instance
from services.domain.protocol.commands import StartInstance
from services.engine.engine import GROUP_ID
from services.engine.fencing import is_fenced, quiet_fenced_leftovers
from services.engine.outbox import Outbox
from services.engine.shard import Shard
from tests.integration.engine_harness import PARTITIONS, definition, prepare_topics

pytestmark = pytest.mark.integration


async def test_a_fenced_transaction_leaves_no_unretrieved_delivery_failure(kafka: str) -> None:
    await prepare_topics(kafka)
    codec = Codec()
    wf = definition("fenced", [{"id": "s", "type": "sleep", "duration": "1h"}])
    now = time.time_ns() // 1000
    out = Outbox()
    for i in range(3):
        events = decide_instance(None, StartInstance(f"f{i}", "fenced", 1, wf, "{}", "t"), now)
        out.events.extend((e, codec.encode_event(e)) for e in events.events)
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    quiet_fenced_leftovers(loop)  # as the engine's process does
    zombie = new_transactional_producer(kafka, "itest-fenced")
    successor = new_transactional_producer(kafka, "itest-fenced")
    try:
        await zombie.start()
        await successor.start()  # init_transactions: the zombie is fenced for good
        shard = Shard(0, zombie, codec, GROUP_ID, 30.0, lambda _queue: None, PARTITIONS)
        with pytest.raises(KafkaError) as failed:
            await shard.commit(out, 1)
        assert is_fenced(failed.value)
        await zombie.stop()
        del shard, failed
        gc.collect()
        await asyncio.sleep(0)  # the loop reports what collection found
    finally:
        await zombie.stop()
        await successor.stop()
        # The producers and whatever they leave are finalized here, under this handler, not
        # by a collection at some later moment of the session.
        del zombie, successor
        gc.collect()
        await asyncio.sleep(0)
        loop.set_exception_handler(previous)
    unretrieved = [c for c in reported if "never retrieved" in str(c.get("message"))]
    assert unretrieved == [], f"{len(unretrieved)} unretrieved: {unretrieved}"
