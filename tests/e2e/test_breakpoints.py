"""Breakpoints set on a workflow, end to end on the real processes, by API and by CLI: the
instances running and those started later pause at the step, loop iterations included, until
a step is resumed or the breakpoint cleared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.adapters.settings import Settings
from tests.e2e.client import Baton, baton_cli, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


async def breakpoints(baton: Baton, wid: str) -> list[str]:
    r = await baton.http.get(f"/workflows/{wid}")
    assert r.status_code == 200, r.text
    return list(r.json()["breakpoints"])


async def wait_breakpoints(baton: Baton, wid: str, expected: list[str]) -> None:
    async def shown() -> bool:
        return await breakpoints(baton, wid) == expected

    await wait_until_async(shown, timeout=30, message=f"{wid} breakpoints are {expected}")


async def test_a_workflow_breakpoint_pauses_running_and_later_instances_until_cleared(
    baton: Baton, tmp_path: Path
) -> None:
    wid = unique("wfbreak")
    marker = tmp_path / "go"
    await baton.push(
        {
            "id": wid,
            "run_strategy": "PARALLEL",
            "steps": [
                {
                    "id": "hold",
                    "type": "shell",
                    "command": f"while [ ! -e {marker} ]; do sleep 0.1; done",
                    "next": ["check"],
                },
                {"id": "check", "type": "noop", "next": ["last"]},
                {"id": "last", "type": "noop"},
            ],
        }
    )
    running = await baton.start(wid)
    await baton.wait_step(running, "hold", "RUNNING")

    r = await baton.http.put(f"/workflows/{wid}/breakpoints/check")
    assert r.status_code == 202, r.text
    assert r.json()["enabled"] is True and r.json()["step_id"] == "check"
    await wait_breakpoints(baton, wid, ["check"])
    await baton.wait_until_reason(running, "check", "breakpoint set")  # reached the running one
    later = await baton.start(wid)
    await baton.wait_until_reason(later, "check", "breakpoint set")  # and the one started after

    marker.touch()
    for iid in (running, later):
        await baton.wait_step(iid, "check", "PAUSED")
        assert (await baton.instance(iid))["status"] == "IN_PROGRESS"

    # One is resumed by hand (the breakpoint stays on the workflow); clearing releases the other.
    r = await baton.http.post(f"/instances/{later}/steps/check/actions/resume")
    assert r.status_code == 202, r.text
    assert (await baton.wait_status(later, "SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"
    assert await breakpoints(baton, wid) == ["check"]
    assert (await baton.steps(running))["check"]["status"] == "PAUSED"

    r = await baton.http.delete(f"/workflows/{wid}/breakpoints/check")
    assert r.status_code == 202, r.text
    assert (await baton.wait_status(running, "SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"
    await wait_breakpoints(baton, wid, [])
    types = [e["type"] for e in await baton.events(running)]
    assert types.count("BreakpointSet") == 2  # set, then cleared
    assert types.index("StepPaused") < types.index("StepResumed")

    # Started after the clear: it runs through.
    after = await baton.start(wid)
    assert (await baton.wait_status(after, "SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"


async def test_a_breakpoint_on_an_unknown_step_or_workflow_is_refused(baton: Baton) -> None:
    wid = unique("wfbreak")
    await baton.push({"id": wid, "steps": [{"id": "only", "type": "noop"}]})
    r = await baton.http.put(f"/workflows/{wid}/breakpoints/nope")
    assert r.status_code == 404
    assert r.json()["detail"] == f"a step 'nope' in any version of workflow {wid!r} does not exist"
    r = await baton.http.put(f"/workflows/{unique('missing')}/breakpoints/only")
    assert r.status_code == 404
    r = await baton.http.put(f"/workflows/{wid}/breakpoints/9bad")
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "path.step_id"


async def test_the_cli_sets_a_breakpoint_inside_a_foreach_and_clears_it(
    baton: Baton, settings: Settings
) -> None:
    wid = unique("wfbreakloop")
    await baton.push(
        {
            "id": wid,
            "steps": [
                {
                    "id": "each",
                    "type": "foreach",
                    "items": [1, 2, 3],
                    "steps": [{"id": "work", "type": "noop"}],
                }
            ],
        }
    )
    out = await baton_cli(settings, "breakpoint", "set", wid, "work")
    assert out.startswith(f"breakpoint set on {wid}/work: accepted")

    async def listed() -> bool:
        return (await baton_cli(settings, "breakpoints", wid)).split() == ["work"]

    await wait_until_async(listed, timeout=30, message="baton breakpoints lists work")

    iid = await baton.start(wid)

    async def iterations() -> list[dict[str, Any]]:
        return await baton.list_instances(parent_instance_id=iid)

    async def all_paused() -> bool:
        found = await iterations()
        if len(found) != 3:
            return False
        steps = [await baton.steps(i["instance_id"]) for i in found]
        return all(s.get("work", {}).get("status") == "PAUSED" for s in steps)

    await wait_until_async(all_paused, timeout=60, message="every iteration paused at work")

    out = await baton_cli(settings, "breakpoint", "clear", wid, "work")
    assert out.startswith(f"breakpoint clear on {wid}/work: accepted")
    assert (await baton.wait_status(iid, "SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"
    assert {i["status"] for i in await iterations()} == {"SUCCEEDED"}
