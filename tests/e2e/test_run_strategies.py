"""Run strategies end to end, on the real processes: the workflow aggregate queues, admits,
drops and supersedes instances; a failure blocks a strict queue until unblocked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.client import Baton, unique

pytestmark = pytest.mark.e2e


def definition(wid: str, strategy: Any) -> dict[str, Any]:
    # `outcome` decides how the one step ends: "wait" runs until stopped, "fail" fails.
    return {
        "id": wid,
        "run_strategy": strategy,
        "params": {"outcome": {"type": "string", "value": "wait"}},
        "steps": [
            {
                "id": "work",
                "type": "shell",
                "command": '[ "$outcome" = ok ] || { [ "$outcome" = fail ] && exit 3; sleep 60; }',
                "retry_policy": {"user_limit": 0},
            }
        ],
    }


async def test_sequential_queues_and_a_queued_instance_can_be_stopped(baton: Baton) -> None:
    wid = unique("sequential")
    await baton.push(definition(wid, "SEQUENTIAL"))
    first = await baton.start(wid)
    assert first.startswith(f"{wid}~")  # routed with its workflow
    await baton.wait_step(first, "work", "RUNNING")
    second = await baton.start(wid, {"outcome": "ok"})
    third = await baton.start(wid, {"outcome": "ok"})
    await baton.wait_status(second, "CREATED")
    await baton.wait_status(third, "CREATED")

    r = await baton.act(second, "stop", {"reason": "not needed"})
    assert r.status_code == 202, r.text
    stopped = await baton.wait_status(second, "STOPPED")
    assert stopped["failure_reason"] == "not needed"
    assert await baton.events(second) == []  # it never ran: no event of its own
    assert (await baton.instance(third))["status"] == "CREATED"  # still behind `first`

    r = await baton.act(first, "stop")
    assert r.status_code == 202, r.text
    await baton.wait_status(first, "STOPPED")
    done = await baton.wait_status(third, "SUCCEEDED", "FAILED", "STOPPED")
    assert done["status"] == "SUCCEEDED", done


async def test_strict_sequential_blocks_after_a_failure_until_unblocked(baton: Baton) -> None:
    wid = unique("strict")
    await baton.push(definition(wid, "STRICT_SEQUENTIAL"))
    failing = await baton.start(wid, {"outcome": "fail"})
    assert (await baton.wait_status(failing, "FAILED", "SUCCEEDED"))["status"] == "FAILED"
    waiting = await baton.start(wid, {"outcome": "ok"})
    await baton.wait_status(waiting, "CREATED")

    r = await baton.act(waiting, "unblock")
    assert r.status_code == 409
    assert r.json()["detail"] == "cannot unblock an instance that is CREATED"
    r = await baton.act(failing, "unblock")
    assert r.status_code == 202, r.text
    done = await baton.wait_status(waiting, "SUCCEEDED", "FAILED", "STOPPED")
    assert done["status"] == "SUCCEEDED", done


async def test_first_only_drops_and_last_only_supersedes(baton: Baton) -> None:
    first_only = unique("firstonly")
    await baton.push(definition(first_only, "FIRST_ONLY"))
    running = await baton.start(first_only)
    await baton.wait_step(running, "work", "RUNNING")
    dropped = await baton.start(first_only, {"outcome": "ok"})
    inst = await baton.wait_status(dropped, "STOPPED")
    assert inst["failure_reason"] == f"FIRST_ONLY: instance {running} is running"
    await baton.act(running, "kill")

    last_only = unique("lastonly")
    await baton.push(definition(last_only, "LAST_ONLY"))
    old = await baton.start(last_only)
    await baton.wait_step(old, "work", "RUNNING")
    new = await baton.start(last_only, {"outcome": "ok"})
    inst = await baton.wait_status(old, "STOPPED")
    assert inst["failure_reason"] == f"LAST_ONLY: superseded by {new}"
    done = await baton.wait_status(new, "SUCCEEDED", "FAILED", "STOPPED")
    assert done["status"] == "SUCCEEDED", done


async def test_parallel_runs_up_to_its_limit(baton: Baton) -> None:
    wid = unique("parallel")
    await baton.push(definition(wid, {"rule": "PARALLEL", "max": 2}))
    a = await baton.start(wid)
    b = await baton.start(wid)
    await baton.wait_step(a, "work", "RUNNING")
    await baton.wait_step(b, "work", "RUNNING")
    c = await baton.start(wid, {"outcome": "ok"})
    await baton.wait_status(c, "CREATED")
    await baton.act(a, "kill")
    done = await baton.wait_status(c, "SUCCEEDED", "FAILED", "STOPPED")
    assert done["status"] == "SUCCEEDED", done
    await baton.act(b, "kill")
