"""Subworkflows end to end, on the real processes: a parent step runs another workflow as a
child instance (started through that workflow's aggregate, possibly on another partition),
takes its outputs, and stopping the parent stops the child."""

from __future__ import annotations

import pytest

from tests.e2e.client import Baton, unique

pytestmark = pytest.mark.e2e


async def test_a_parent_runs_a_child_takes_its_outputs_and_stops_it(baton: Baton) -> None:
    child_wf, parent_wf = unique("child"), unique("parent")
    await baton.push(
        {
            "id": child_wf,
            "run_strategy": {"rule": "PARALLEL", "max": 10},
            "params": {"rows": {"type": "long", "value": 0}},
            "steps": [
                {
                    "id": "count",
                    "type": "shell",
                    # Waits when asked (rows < 0), otherwise reports rows * 2.
                    "command": '[ "$rows" -ge 0 ] || sleep 60; '
                    'echo "{\\"doubled\\": $((rows * 2))}" > "$BATON_OUTPUTS"',
                }
            ],
        }
    )
    await baton.push(
        {
            "id": parent_wf,
            "run_strategy": {"rule": "PARALLEL", "max": 10},
            "params": {"n": {"type": "long", "value": 21}},
            "steps": [
                {
                    "id": "load",
                    "type": "subworkflow",
                    "workflow": child_wf,
                    "params": {"rows": {"type": "long", "expression": "n"}},
                    "next": ["check"],
                },
                {
                    "id": "check",
                    "type": "shell",
                    "params": {
                        "doubled": {
                            "type": "long",
                            "expression": "steps.load.outputs.count.doubled",
                        }
                    },
                    "command": '[ "$doubled" = 42 ]',
                },
            ],
        }
    )
    iid = await baton.start(parent_wf)
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED")
    assert done["status"] == "SUCCEEDED", done
    child = f"{iid}~load~1"
    child_row = await baton.instance(child)
    assert child_row["status"] == "SUCCEEDED" and child_row["workflow_id"] == child_wf
    assert child_row["params"] == {"rows": 21}
    started = (await baton.events(child))[0]["payload"]
    assert (started["parent_instance_id"], started["depth"]) == (iid, 1)

    # Cancellation propagates down: stopping the parent stops the running child.
    waiting = await baton.start(parent_wf, {"n": -1})
    waiting_child = f"{waiting}~load~1"
    await baton.wait_step(waiting_child, "count", "RUNNING")
    r = await baton.act(waiting, "stop", {"reason": "enough"})
    assert r.status_code == 202, r.text
    await baton.wait_status(waiting, "STOPPED")
    stopped = await baton.wait_status(waiting_child, "STOPPED")
    assert stopped["failure_reason"] == f"parent step {waiting}/load ended: enough"
