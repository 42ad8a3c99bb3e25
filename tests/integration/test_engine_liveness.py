"""Worker liveness survives an engine restart, on real Kafka: an attempt whose worker went
silent before the engine restarted is failed a heartbeat timeout after it was last heard of
(as the snapshot recorded it), not a whole fresh timeout after the restart."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.avro import Codec
from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.publish import send_command
from services.domain.protocol.commands import ReportAttemptStarted, StartInstance
from services.domain.protocol.events import StepAttemptFailed, StepAttemptStarted
from services.engine.snapshots import read_snapshot
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    definition,
    following_events,
    instance_ids_on,
    running_engine,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 6.0
DOWN_S = 5.0  # the engine is away this long after the worker was last heard of
WF = definition(
    "silent-worker",
    [{"id": "a", "type": "shell", "command": "sleep 600", "retry_policy": {"platform_limit": 0}}],
)


async def test_a_worker_that_died_before_the_restart_gets_no_fresh_grace(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    (iid,) = instance_ids_on(6, 1)
    codec = Codec()
    async with following_events(kafka) as log:
        async with running_engine(
            kafka, "itest-liveness-1", heartbeat_timeout_s=TIMEOUT_S, snapshot_interval_s=0.2
        ):
            await send_command(
                producer, codec, StartInstance(iid, "silent-worker", 1, WF, "{}", "t", None)
            )
            await wait_until_async(lambda: "StepAttemptCreated" in log.types(iid), timeout=30)
            # A worker takes the attempt, says so once, and dies.
            await send_command(producer, codec, ReportAttemptStarted(iid, "a", 1, "doomed"))
            await wait_until_async(lambda: "StepAttemptStarted" in log.types(iid), timeout=30)
            [started] = [e for e in log.of(iid) if isinstance(e.payload, StepAttemptStarted)]

            async def recorded() -> bool:  # a snapshot holds the attempt as heard of
                restored = await read_snapshot(kafka, 6, SnapshotCodec())
                seen = restored.checkpoint.attempts_seen if restored is not None else ()
                return any(entry[:3] == (iid, "a", 1) for entry in seen)

            await wait_until_async(recorded, timeout=30, message="a snapshot records it")
        # The engine is away (stopped; the next one recovers from its snapshot).
        await asyncio.sleep(max(0.0, started.occurred_at / 1e6 + DOWN_S - time.time()))
        async with running_engine(
            kafka, "itest-liveness-2", heartbeat_timeout_s=TIMEOUT_S, snapshot_interval_s=0.2
        ):
            back_at = time.time()

            def failed() -> list[StepAttemptFailed]:
                return [e.payload for e in log.of(iid) if isinstance(e.payload, StepAttemptFailed)]

            await wait_until_async(failed, timeout=30, message="the silent attempt fails")
            [failure] = [e for e in log.of(iid) if isinstance(e.payload, StepAttemptFailed)]
    assert "heartbeat" in failure.payload.message  # type: ignore[union-attr]
    # Failed about TIMEOUT_S after it was last heard of: well before a fresh timeout from
    # the restart would have ended (back_at + TIMEOUT_S).
    assert failure.occurred_at / 1e6 < back_at + TIMEOUT_S - 2.0, (
        failure.occurred_at / 1e6 - back_at
    )
    assert failure.occurred_at / 1e6 >= started.occurred_at / 1e6 + TIMEOUT_S
