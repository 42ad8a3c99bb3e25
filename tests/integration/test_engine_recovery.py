"""Recovery of a long partition: the engine keeps serving everything else while it folds."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.avro import Codec
from services.adapters.publish import send_command
from services.domain.protocol.commands import StartInstance
from services.engine import shard as shard_module
from services.engine.engine import STOP_FLUSH_TIMEOUT_S, Engine
from services.engine.outbox import Outbox
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    PARTITIONS,
    definition,
    following_events,
    instance_ids_on,
    long_partition,
)

pytestmark = pytest.mark.integration

LONG, SHORT = 6, 1  # the partition with a long history, and one without
# These engines neither write nor read snapshots: the fold of a long log is what is tested, and
# the long history is deleted after each test (a snapshot of it would outlive it).
# Enough history that folding it takes seconds on this machine (about 4 events each).
LONG_INSTANCES = 40_000


@pytest.fixture(scope="module")
def kafka(history_kafka: str) -> str:
    """Every test here on the broker of long histories (see `history_kafka`)."""
    return history_kafka


class LoopWatch:
    """The longest the event loop went without running a ready task (what delays heartbeats
    and signal handlers)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            self.longest = max(self.longest, time.monotonic() - t0 - 0.01)

    def stop(self) -> None:
        self._task.cancel()


async def test_a_partition_decides_as_soon_as_it_is_recovered_while_a_long_one_folds(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """A StartInstance on a short partition is decided while the long one is still folding;
    the long one is taken once (never refolded), and the loop keeps turning meanwhile."""
    wf = definition("beside-a-long-fold", [{"id": "s", "type": "sleep", "duration": "1h"}])
    (iid,) = instance_ids_on(SHORT, 1)
    engine = Engine(kafka, PARTITIONS, Codec(), "itest-long-fold", snapshot_interval_s=0)
    async with (
        long_partition(kafka, LONG, LONG_INSTANCES) as written,
        following_events(kafka) as log,
    ):
        await engine.start()
        started = time.monotonic()
        run = asyncio.create_task(engine.run())
        watch = LoopWatch()
        try:
            await send_command(
                producer, Codec(), StartInstance(iid, "beside-a-long-fold", 1, wf, "{}", "itest")
            )
            await wait_until_async(
                lambda: "StepAttemptStarted" in log.types(iid), timeout=120, message="decided"
            )
            decided = time.monotonic() - started
            assert LONG not in engine.shards, "the short partition waited for the long fold"
            await wait_until_async(lambda: LONG in engine.shards, timeout=120, message="folded")
            folded = time.monotonic() - started
            assert engine.ownership.generation == 1  # taken once: never evicted, never refolded
            print(
                f"short partition decided after {decided:.2f} s; {written} events folded in "
                f"{folded:.2f} s ({written / folded:,.0f} events/s); longest loop stall "
                f"{watch.longest * 1000:.0f} ms"
            )
            # Heartbeats are due every second and the session lasts 10: a loaded machine may
            # delay the loop, a fold may not hold it.
            assert watch.longest < 3.0
        finally:
            watch.stop()
            engine.stop()
            await run
            await engine.close()


async def test_an_engine_joining_during_a_long_fold_gets_partitions_that_decide_at_once(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """A second engine joins while the first folds a long partition: the rebalance does not
    wait for the fold, and an instance on a short partition is decided before the long one
    is recovered (wherever it went)."""
    wf = definition("joining-a-long-fold", [{"id": "s", "type": "sleep", "duration": "1h"}])
    first = Engine(kafka, PARTITIONS, Codec(), "itest-fold-first", snapshot_interval_s=0)
    second = Engine(kafka, PARTITIONS, Codec(), "itest-fold-second", snapshot_interval_s=0)
    async with long_partition(kafka, LONG, LONG_INSTANCES), following_events(kafka) as log:
        await first.start()
        runs = [asyncio.create_task(first.run())]
        try:
            assert first.consumer is not None
            consumer = first.consumer
            await wait_until_async(lambda: consumer.assignment(), timeout=60, message="assigned")
            joined = time.monotonic()
            await second.start()
            runs.append(asyncio.create_task(second.run()))
            await wait_until_async(lambda: second.shards, timeout=60, message="second owns one")
            short = next(p for p in second.shards if p != LONG)
            (iid,) = instance_ids_on(short, 1)
            await send_command(
                producer,
                Codec(),
                StartInstance(iid, "joining-a-long-fold", 1, wf, "{}", "itest"),
            )
            await wait_until_async(
                lambda: "StepAttemptStarted" in log.types(iid), timeout=120, message="decided"
            )
            decided = time.monotonic() - joined
            assert LONG not in first.shards and LONG not in second.shards, (
                "the short partition waited for the long fold"
            )
            print(f"after a second engine joined: p{short} decided within {decided:.2f} s")
        finally:
            for engine in (first, second):
                engine.stop()
            await asyncio.gather(*runs)
            for engine in (first, second):
                await engine.close()


async def test_a_stop_does_not_wait_forever_for_a_transaction_that_hangs(
    kafka: str, producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that stops answering mid-transaction: a stop lets the transaction finish for
    a while, then aborts it (its inputs are decided again by the next owner) and ends."""
    hung = asyncio.Event()

    async def never_answers(
        self: shard_module.Shard, out: Outbox, next_offset: int | None, capture: object = None
    ) -> None:
        hung.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(shard_module.Shard, "commit", never_answers)
    wf = definition("hangs", [{"id": "s", "type": "sleep", "duration": "1h"}])
    engine = Engine(kafka, PARTITIONS, Codec(), "itest-hung-commit", snapshot_interval_s=0)
    await engine.start()
    run = asyncio.create_task(engine.run())
    try:
        await engine.wait_assigned()
        (iid,) = instance_ids_on(SHORT, 1)
        await send_command(producer, Codec(), StartInstance(iid, "hangs", 1, wf, "{}", "itest"))
        await asyncio.wait_for(hung.wait(), timeout=60)
        t0 = time.monotonic()
        engine.stop()
        await asyncio.wait_for(asyncio.shield(run), timeout=STOP_FLUSH_TIMEOUT_S + 5)
        print(f"stopped {time.monotonic() - t0:.2f} s after stop() with a hung transaction")
    finally:
        if not run.done():
            run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await engine.close()
