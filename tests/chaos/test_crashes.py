"""kill -9 the engine and the projector under load: nothing lost, nothing duplicated.

200 instances of a 10-step workflow run while the engine is killed at random moments and
restarted, several times; then the projector the same way. Every instance must end
SUCCEEDED, every instance's events must have gapless sequence numbers, no step may have two
successful attempts, and the read models must equal a fresh fold of the log.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from services.adapters.event_log import read_all_events
from services.adapters.kafka import TOPIC_EVENTS, new_consumer
from services.adapters.settings import Settings
from services.cli.stack import Stack
from services.domain.protocol.events import Event
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.chaos

INSTANCES = 200
KILLS = 4
READ_MODELS = {
    "workflows": "workflow_id",
    "workflow_versions": "workflow_id, version",
    "instances": "instance_id",
    "steps": "instance_id, step_id",
    "attempts": "instance_id, step_id, attempt",
    "events": "aggregate_id, seq",
}


def ten_steps(wid: str) -> dict[str, Any]:
    """A diamond-shaped chain: fan-out, a timer, a join, then a tail."""
    steps: list[dict[str, Any]] = [
        {"id": "s0", "type": "noop", "next": ["s1", "s2", "s3"]},
        {"id": "s1", "type": "noop", "next": ["s4"]},
        {"id": "s2", "type": "sleep", "duration": "6s", "next": ["s4"]},
        {"id": "s3", "type": "noop", "next": ["s4"]},
    ]
    steps += [{"id": f"s{i}", "type": "noop", "next": [f"s{i + 1}"]} for i in range(4, 9)]
    steps.append({"id": "s9", "type": "noop"})
    # PARALLEL: all 200 run at once (SEQUENTIAL, the default, would run them one by one).
    return {"id": wid, "run_strategy": {"rule": "PARALLEL", "max": 1000}, "steps": steps}


async def killer(stack: Stack, name: str, kills: int, seed: int) -> list[int]:
    """kill -9 `name` at random moments and restart it; returns the kill times (UTC micros)."""
    rng = random.Random(seed)
    times = []
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.2, 1.0))  # a random moment, not a synchronisation
        times.append(time.time_ns() // 1000)
        stack.kill(name, signal.SIGKILL)
        stack.restart(name)
    return times


async def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {
            table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
            for table, key in READ_MODELS.items()
        }
    finally:
        await conn.close()


async def assert_rebuild_matches(stack: Stack, url: str, bootstrap: str, partitions: int) -> None:
    """The read models as they are equal a rebuild from offset 0 by a fresh projector (which
    the stack then keeps running)."""
    before = await dump(url)
    stack.kill("projector", signal.SIGTERM)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE " + ", ".join(READ_MODELS) + ", projector_offsets")
    finally:
        await conn.close()
    stack.restart("projector")
    await wait_until_async(lambda: projector_caught_up(url, bootstrap, partitions), timeout=120)
    after = await dump(url)
    for table in READ_MODELS:
        assert after[table] == before[table], f"{table} differs after a rebuild from offset 0"


async def projector_caught_up(url: str, bootstrap: str, partitions: int) -> bool:
    """The projector's stored positions have reached the end of every events partition."""
    tps = [TopicPartition(TOPIC_EVENTS, p) for p in range(partitions)]
    consumer = new_consumer(bootstrap, None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets")
    finally:
        await conn.close()
    stored = {r["partition"]: r["next_offset"] for r in rows}
    return all(stored.get(tp.partition, 0) >= end for tp, end in ends.items())


async def test_kill_9_engine_and_projector_under_load(
    baton: Baton, stack: Stack, settings: Settings, kafka: str, postgres: str
) -> None:
    wid = unique("crash")
    await baton.push(ten_steps(wid))
    ids = []
    for chunk in range(0, INSTANCES, 50):
        ids += await asyncio.gather(
            *(baton.start(wid) for _ in range(chunk, min(INSTANCES, chunk + 50)))
        )
    engine_kills, _ = await asyncio.gather(
        killer(stack, "engine", KILLS, seed=7), killer(stack, "projector", KILLS, seed=11)
    )

    async def all_succeeded() -> bool:
        r = await baton.http.get("/instances", params={"workflow_id": wid, "limit": 1000})
        statuses = Counter(i["status"] for i in r.json()["items"])
        return statuses.get("SUCCEEDED", 0) == INSTANCES

    await wait_until_async(
        all_succeeded, timeout=240, interval=0.5, message="200 instances succeed"
    )

    by_instance: dict[str, list[Event]] = defaultdict(list)
    log = await read_all_events(kafka)
    for e in log:
        if e.instance_id in set(ids):
            by_instance[e.instance_id].append(e)
    assert set(by_instance) == set(ids)
    # The run strategy admitted and released each instance exactly once, across the kills.
    workflow_events = [e for e in log if e.instance_id is None and e.workflow_id == wid]
    assert [e.seq for e in workflow_events] == list(range(1, len(workflow_events) + 1))
    for kind in ("InstanceAdmitted", "InstanceReleased"):
        named = Counter(e.payload.instance_id for e in workflow_events if e.type == kind)  # type: ignore[union-attr]
        assert set(named) == set(ids) and set(named.values()) == {1}, kind
    for iid, events in by_instance.items():
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), iid
        wins = Counter(e.payload.step_id for e in events if e.type == "StepAttemptSucceeded")  # type: ignore[union-attr]
        assert set(wins.values()) == {1} and len(wins) == 10, (iid, wins)
        assert [e.type for e in events].count("InstanceSucceeded") == 1
    # The kills landed mid-flight: instances had started before the first kill, and the
    # engine was still finishing instances after the last one.
    all_events = [e for events in by_instance.values() for e in events]
    assert min(e.occurred_at for e in all_events if e.type == "InstanceStarted") < engine_kills[0]
    assert (
        max(e.occurred_at for e in all_events if e.type == "InstanceSucceeded") > engine_kills[-1]
    )

    # The read models equal a fresh fold of the log.
    await wait_until_async(
        lambda: projector_caught_up(postgres, kafka, settings.partitions), timeout=60
    )
    await assert_rebuild_matches(stack, postgres, kafka, settings.partitions)
