"""A frozen engine (SIGSTOP) past its session timeout: the other engine takes its partitions
over, fencing its producers; when the zombie wakes (SIGCONT) it cannot commit anything, and no
transition is lost or duplicated."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict
from typing import Any

import pytest

from services.adapters.event_log import read_all_events
from services.adapters.settings import Settings
from services.cli.stack import Stack
from services.domain.protocol.events import Event
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.chaos


def chain(wid: str, steps: int) -> dict[str, Any]:
    return {
        "id": wid,
        "steps": [
            {"id": f"s{i}", "type": "noop", **({"next": [f"s{i + 1}"]} if i < steps - 1 else {})}
            for i in range(steps)
        ],
    }


async def test_a_frozen_engine_is_fenced_and_nothing_is_lost_or_duplicated(
    baton: Baton, stack: Stack, settings: Settings, kafka: str
) -> None:
    second = stack.start("engine", "--id", "engine-2")
    wid = unique("zombie")
    await baton.push(chain(wid, 5))

    async def all_succeed(ids: list[str], timeout: float) -> None:
        async def done() -> bool:
            statuses = [(await baton.instance(i)).get("status") for i in ids]
            return all(s == "SUCCEEDED" for s in statuses)

        await wait_until_async(done, timeout=timeout, interval=0.5, message=f"{len(ids)} succeed")

    ids = list(await asyncio.gather(*(baton.start(wid) for _ in range(40))))
    stack.kill("engine", signal.SIGSTOP)  # frozen mid-work: holds partitions, cannot heartbeat
    try:
        # engine-2 takes the frozen engine's partitions once its session (10 s) expires.
        ids += await asyncio.gather(*(baton.start(wid) for _ in range(40)))
        await all_succeed(ids, timeout=120)
    finally:
        stack.kill("engine", signal.SIGCONT)  # the zombie wakes: it has been fenced
    ids += await asyncio.gather(*(baton.start(wid) for _ in range(40)))
    await all_succeed(ids, timeout=120)
    stack.kill(second, signal.SIGTERM)

    by_instance: dict[str, list[Event]] = defaultdict(list)
    wanted = set(ids)
    for e in await read_all_events(kafka):
        if e.instance_id in wanted:
            by_instance[e.instance_id].append(e)
    assert set(by_instance) == wanted
    for iid, events in by_instance.items():
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), iid
        wins = Counter(e.payload.step_id for e in events if e.type == "StepAttemptSucceeded")  # type: ignore[union-attr]
        assert set(wins.values()) == {1} and len(wins) == 5, (iid, wins)
