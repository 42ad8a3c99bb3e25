"""kill -9 the engine around cron firings: each cron time starts exactly one instance.

Two workflows fire at the same minute. The first fires while the engine is down (killed a
second before, restarted a second after): the new engine fires it late, once. The second, with
a jitter chosen to fire some seconds later, fires on the restarted engine, which is killed at
that moment (3 ms after the fire time: in this machine's runs, before its transaction
committed, so the restarted engine decided the firing again) and restarted. Either way the log holds one firing per cron time, and one instance
started for it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from services.adapters.event_log import read_all_events
from services.cli.stack import Stack
from services.domain.language.triggers import TimeTrigger, jitter_of
from services.domain.protocol.events import InstanceStarted, TimeTriggerFired
from services.domain.protocol.routing import derived_instance_id
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.chaos

EVERY_MINUTE = "* * * * *"
JITTER_S = 50
MICROS = 1_000_000
KILL_AFTER_US = 3_000  # how long after the second fire time the engine is killed


def cron_workflow(wid: str, jitter: int = 0) -> dict[str, Any]:
    return {
        "id": wid,
        "run_strategy": "PARALLEL",
        "time_triggers": [{"cron": EVERY_MINUTE, "jitter": jitter}],
        "steps": [{"id": "only", "type": "noop"}],
    }


async def sleep_until(at_micros: int) -> None:
    """Until the wall clock reads `at_micros`: asleep, then spinning the last quarter second
    (the event loop sleeps by monotonic time, which drifts from the wall clock here by tens of
    milliseconds a minute)."""
    at = at_micros / MICROS
    await asyncio.sleep(max(0.0, at - time.time() - 0.25))
    while time.time() < at:
        pass  # nothing else runs meanwhile: the test waits for this moment alone


async def first_fire_at(baton: Baton, wid: str) -> tuple[int, int]:
    """The trigger's first (cron time, fire time), as the projection shows them (UTC micros)."""
    found: list[dict[str, Any]] = []

    async def scheduled() -> bool:
        found[:] = (await baton.http.get(f"/workflows/{wid}")).json().get("time_triggers", [])
        return bool(found)

    await wait_until_async(scheduled, timeout=30, message=f"{wid} trigger scheduled")

    def micros(text: str) -> int:
        return round(datetime.fromisoformat(text).timestamp() * MICROS)

    return micros(found[0]["scheduled_for"]), micros(found[0]["fire_at"])


def late_wid(minute: int) -> str:
    """A workflow id whose jitter for `minute` fires it 25 to 45 s after the minute: after the
    restarted engine has taken its partitions back (a killed member's session lasts 10 s)."""
    trigger = TimeTrigger(cron=EVERY_MINUTE, jitter=JITTER_S)
    while True:
        wid = unique("cronlate")
        if 25 * MICROS <= jitter_of(trigger, wid, 0, minute) <= 45 * MICROS:
            return wid


async def test_each_cron_time_starts_one_instance_across_engine_kills(
    baton: Baton, stack: Stack, kafka: str
) -> None:
    # Far enough from a minute boundary that both workflows are scheduled for the same one.
    if 60 - time.time() % 60 < 8:
        await asyncio.sleep(60 - time.time() % 60 + 1)
    down = unique("crondown")
    await baton.push(cron_workflow(down))
    minute, fire_down = await first_fire_at(baton, down)
    assert fire_down == minute  # no jitter
    late = late_wid(minute)
    await baton.push(cron_workflow(late, JITTER_S))
    scheduled, fire_late = await first_fire_at(baton, late)
    assert scheduled == minute
    try:
        # 1. The engine is down at the firing: killed a second before, restarted after.
        await sleep_until(minute - MICROS)
        stack.kill("engine", signal.SIGKILL)
        await sleep_until(minute + MICROS)
        stack.restart("engine")
        down_iid = derived_instance_id(down, f"cron\0{0}\0{minute}")
        done = await baton.wait_status(down_iid, "SUCCEEDED", timeout=60)
        assert done["initiator"] == f"cron:{EVERY_MINUTE}"
        # The restarted engine runs before the second firing: that one is killed mid-flight.
        assert time.time() * MICROS < fire_late, "the engine came back too late for step 2"

        # 2. The restarted engine fires the other one and is killed as it does: a few
        # milliseconds after the fire time, as its transaction commits (or just before, or
        # just after: the firing's own timing varies by milliseconds).
        await sleep_until(fire_late + KILL_AFTER_US)
        killed_at = time.time_ns() // 1000
        stack.kill("engine", signal.SIGKILL)
        stack.restart("engine")
        late_iid = derived_instance_id(late, f"cron\0{0}\0{minute}")
        await baton.wait_status(late_iid, "SUCCEEDED", timeout=60)
    finally:
        for wid in (down, late):
            await baton.http.post(f"/workflows/{wid}/actions/deactivate")

    log = await read_all_events(kafka)
    for wid, iid in ((down, down_iid), (late, late_iid)):
        fired = [
            e.payload
            for e in log
            if e.instance_id is None and e.workflow_id == wid
            if isinstance(e.payload, TimeTriggerFired)
        ]
        # One firing per cron time (a later minute may have fired too before deactivation).
        assert Counter(p.scheduled_for for p in fired)[minute] == 1, (wid, fired)
        first = next(p for p in fired if p.scheduled_for == minute)
        assert first.instance_id == iid and first.next_scheduled_for == minute + 60 * MICROS
        starts = [e for e in log if e.instance_id == iid and isinstance(e.payload, InstanceStarted)]
        assert len(starts) == 1, wid
        assert not any(
            e.instance_id is not None
            and e.workflow_id == wid
            and e.instance_id not in _cron_ids(wid, fired)
            for e in log
        ), "an instance no firing named"
    # The down engine's firing came late, after its restart.
    down_fired = next(
        e
        for e in log
        if e.workflow_id == down
        and e.instance_id is None
        and isinstance(e.payload, TimeTriggerFired)
    )
    assert down_fired.occurred_at > minute + MICROS
    late_fired = next(
        e
        for e in log
        if e.workflow_id == late
        and e.instance_id is None
        and isinstance(e.payload, TimeTriggerFired)
    )
    # Which side of the kill the firing committed on (printed: every outcome is correct; a
    # firing recorded seconds later was decided again by the restarted engine).
    print(
        f"cron chaos: killed {(killed_at - fire_late) / 1000:.1f} ms after the fire time; the"
        f" firing was recorded {(late_fired.occurred_at - fire_late) / 1000:.1f} ms after it"
    )


def _cron_ids(wid: str, fired: list[TimeTriggerFired]) -> set[str]:
    return {derived_instance_id(wid, f"cron\0{0}\0{p.scheduled_for}") for p in fired}
