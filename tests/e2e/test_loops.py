"""foreach and while end to end, on the real processes: iterations run as child instances on
workers, the loop aggregates their outputs, the read model shows the progress, and a while
loop repeats until its condition, over the last iteration's outputs, is false."""

from __future__ import annotations

import pytest

from tests.e2e.client import Baton, unique

pytestmark = pytest.mark.e2e


async def test_foreach_runs_each_item_and_aggregates_the_outputs(baton: Baton) -> None:
    wf = unique("foreach")
    await baton.push(
        {
            "id": wf,
            "params": {"days": {"type": "long_array", "value": [1, 2, 3, 4, 5, 6, 7]}},
            "steps": [
                {
                    "id": "each",
                    "type": "foreach",
                    "items": "params.days",
                    "concurrency": 3,
                    "params": {"day": {"type": "long", "expression": "iteration.item"}},
                    "steps": [
                        {
                            "id": "square",
                            "type": "shell",
                            "command": 'echo "{\\"sq\\": $((day * day))}" > "$BATON_OUTPUTS"',
                        }
                    ],
                    "next": ["total"],
                },
                {
                    "id": "total",
                    "type": "shell",
                    "params": {
                        "n": {"type": "long", "expression": "steps.each.outputs.iterations"},
                        "last": {
                            "type": "long",
                            "expression": "steps.each.outputs.results[6].square.sq",
                        },
                    },
                    "command": '[ "$n" = 7 ] && [ "$last" = 49 ]',
                },
            ],
        }
    )
    iid = await baton.start(wf)
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED", timeout=120)
    assert done["status"] == "SUCCEEDED", done
    steps = await baton.steps(iid)
    assert steps["each"]["iterations"] == {
        "total": 7,
        "started": 7,
        "statuses": {"SUCCEEDED": 7},
    }
    third = await baton.instance(f"{iid}~each~1~2")
    assert third["params"]["day"] == 3
    assert (third["parent_instance_id"], third["parent_step_id"]) == (iid, "each")
    children = await baton.list_instances(parent_instance_id=iid)
    assert len(children) == 7
    top = await baton.list_instances(workflow_id=wf, top_level="true")
    assert [i["instance_id"] for i in top] == [iid]


async def test_while_repeats_until_its_condition_is_false(baton: Baton) -> None:
    wf = unique("while")
    await baton.push(
        {
            "id": wf,
            "steps": [
                {
                    "id": "train",
                    "type": "while",
                    "condition": "iteration.index == 0 || iteration.outputs.epoch.loss > 10",
                    "max_iterations": 10,
                    "params": {"epoch": {"type": "long", "expression": "iteration.index"}},
                    "steps": [
                        {
                            "id": "epoch",
                            "type": "shell",
                            # The loss halves each epoch: 80, 40, 20, 10.
                            "command": 'echo "{\\"loss\\": $((80 >> epoch))}" > "$BATON_OUTPUTS"',
                        }
                    ],
                }
            ],
        }
    )
    iid = await baton.start(wf)
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED", timeout=120)
    assert done["status"] == "SUCCEEDED", done
    steps = await baton.steps(iid)
    assert steps["train"]["iterations"]["started"] == 4
    succeeded = [
        e["payload"] for e in await baton.events(iid) if e["type"] == "StepAttemptSucceeded"
    ]
    assert succeeded[-1]["step_id"] == "train"


async def test_an_iteration_restarts_from_a_step_of_the_loops_body(baton: Baton) -> None:
    wf = unique("foreach-restart")
    await baton.push(
        {
            "id": wf,
            "steps": [
                {
                    "id": "each",
                    "type": "foreach",
                    "items": [1],
                    "steps": [
                        {"id": "prepare", "type": "noop", "next": ["flaky"]},
                        {
                            "id": "flaky",
                            "type": "python",
                            "function": "examples.steps:flaky",  # fails its first attempt
                            "retry_policy": {"user_limit": 0},
                        },
                    ],
                }
            ],
        }
    )
    iid = await baton.start(wf)
    failed = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED")
    assert failed["status"] == "FAILED", failed
    iteration = f"{iid}~each~1~0"
    # Checked against the loop's body (its steps), which the iteration runs.
    r = await baton.act(iteration, "restart", {"mode": "FROM_STEP", "step": "flaky"})
    assert r.status_code == 202, r.text
    again = await baton.wait_status(iteration, "SUCCEEDED")
    assert again["run"] == 2
