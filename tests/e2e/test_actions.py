"""Instance and step actions end to end, on the real processes: pause and resume, skip,
stop and restart a step, and the step concurrency."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


async def test_pause_holds_new_steps_skip_stops_a_running_one_and_resume_goes_on(
    baton: Baton,
) -> None:
    wid = unique("pause")
    await baton.push(
        {
            "id": wid,
            "step_concurrency": 1,
            "steps": [
                {"id": "long", "type": "shell", "command": "sleep 60", "next": ["after"]},
                {"id": "after", "type": "noop"},
            ],
        }
    )
    iid = await baton.start(wid)
    await baton.wait_step(iid, "long", "RUNNING")

    r = await baton.act(iid, "pause", {"reason": "maintenance"})
    assert r.status_code == 202, r.text
    await baton.wait_status(iid, "PAUSED")
    again = await baton.act(iid, "pause")
    assert again.status_code == 409
    assert again.json()["detail"] == "cannot pause an instance that is PAUSED"

    r = await baton.http.post(
        f"/instances/{iid}/steps/long/actions/skip", json={"reason": "done by hand"}
    )
    assert r.status_code == 202, r.text
    await baton.wait_step(iid, "long", "SKIPPED")
    # Paused: the successor does not start.
    assert (await baton.steps(iid))["after"]["status"] == "NOT_CREATED"
    (attempt,) = await baton.attempts(iid, "long")
    assert attempt["status"] == "STOPPED"

    r = await baton.act(iid, "resume")
    assert r.status_code == 202, r.text
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED")
    assert inst["status"] == "SUCCEEDED", inst
    steps = await baton.steps(iid)
    assert steps["long"]["reason"] == "done by hand"
    types = [e["type"] for e in await baton.events(iid)]
    assert types[:4] == [
        "InstanceStarted",
        "StepAttemptCreated",
        "StepAttemptStarted",
        "InstancePaused",
    ]
    assert "InstanceResumed" in types and "StepSkipped" in types

    r = await baton.http.post(f"/instances/{iid}/steps/after/actions/stop")
    assert r.status_code == 409
    assert r.json()["detail"] == "cannot stop a step of an instance that is SUCCEEDED"


async def test_a_stopped_step_ends_the_run_stopped_and_restarting_it_runs_it_again(
    baton: Baton, tmp_path: Path
) -> None:
    wid = unique("stepstop")
    marker = tmp_path / "second-time"
    await baton.push(
        {
            "id": wid,
            "steps": [
                {
                    "id": "work",
                    "type": "shell",
                    # First run: hangs until stopped. Afterwards: succeeds at once.
                    "command": f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 60",
                    "next": ["last"],
                },
                {"id": "last", "type": "noop"},
            ],
        }
    )
    iid = await baton.start(wid)
    await baton.wait_step(iid, "work", "RUNNING")
    r = await baton.http.post(f"/instances/{iid}/steps/last/actions/stop")
    assert r.status_code == 409
    assert r.json()["detail"] == "cannot stop step last: it is NOT_CREATED"

    r = await baton.http.post(f"/instances/{iid}/steps/work/actions/stop", json={"reason": "x"})
    assert r.status_code == 202, r.text
    inst = await baton.wait_status(iid, "STOPPED", "FAILED", "SUCCEEDED")
    assert inst["status"] == "STOPPED" and inst["failure_reason"] == "step(s) stopped: work"

    # The run has ended: restarting the step makes a new run from it.
    r = await baton.http.post(f"/instances/{iid}/steps/work/actions/restart")
    assert r.status_code == 202, r.text

    async def second_run_ended() -> bool:
        inst = await baton.instance(iid)
        return inst["run"] == 2 and inst["status"] in ("SUCCEEDED", "FAILED", "STOPPED")

    await wait_until_async(second_run_ended, timeout=60, message="run 2 ends")
    inst = await baton.instance(iid)
    assert inst["status"] == "SUCCEEDED", inst
    attempts = await baton.attempts(iid, "work")
    assert [(a["attempt"], a["run"], a["status"]) for a in attempts] == [
        (1, 1, "STOPPED"),
        (2, 2, "SUCCEEDED"),
    ]


async def test_a_breakpoint_pauses_a_step_before_it_starts_until_it_is_resumed(
    baton: Baton,
) -> None:
    wid = unique("breakpoint")
    await baton.push(
        {
            "id": wid,
            "steps": [
                {"id": "first", "type": "noop", "next": ["check"]},
                {"id": "check", "type": "noop", "breakpoint": True, "next": ["last"]},
                {"id": "last", "type": "noop"},
            ],
        }
    )
    iid = await baton.start(wid)
    await baton.wait_step(iid, "check", "PAUSED")
    assert (await baton.instance(iid))["status"] == "IN_PROGRESS"
    # A breakpoint set through the API on a step not reached yet.
    r = await baton.http.post(f"/instances/{iid}/steps/last/actions/pause")
    assert r.status_code == 202, r.text
    await baton.wait_until_reason(iid, "last", "breakpoint set")
    assert await baton.attempts(iid, "check") == []

    r = await baton.http.post(f"/instances/{iid}/steps/first/actions/resume")
    assert r.status_code == 409
    assert r.json()["detail"] == "cannot resume step first: it is SUCCEEDED"

    r = await baton.http.post(f"/instances/{iid}/steps/check/actions/resume")
    assert r.status_code == 202, r.text
    await baton.wait_step(iid, "last", "PAUSED")
    r = await baton.http.post(f"/instances/{iid}/steps/last/actions/resume")
    assert r.status_code == 202, r.text
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED")
    assert inst["status"] == "SUCCEEDED", inst
    types = [e["type"] for e in await baton.events(iid)]
    assert types.count("StepPaused") == 2 and types.count("StepResumed") == 2
    assert "BreakpointSet" in types
