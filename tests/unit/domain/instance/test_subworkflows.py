"""Subworkflow steps: a parent starts a child instance of another workflow through that
workflow's aggregate; the child reports its end; stopping the parent stops the child."""

from __future__ import annotations

import json
from typing import Any

from services.domain.kernel.statuses import FailureKind, InstanceStatus, StepStatus
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    PushWorkflow,
    ReportAttemptFailed,
    ReportAttemptSucceeded,
    StartInstance,
    StopInstance,
)
from services.domain.protocol.routing import child_id
from tests.unit.domain import given


class World(given.World):
    def push(self, definition: dict[str, Any]) -> str:
        text = parse_workflow(definition).to_json()
        self.when(PushWorkflow(definition["id"], text))
        return text

    def start(self, workflow_id: str, iid: str, params: dict[str, Any] | None = None) -> None:
        text = self.workflows[workflow_id].definitions[self.workflows[workflow_id].latest_version]
        self.when(StartInstance(iid, workflow_id, 1, text, json.dumps(params or {}), "t", None))

    def step(self, iid: str, step_id: str) -> StepStatus:
        return self.instances[iid].steps[step_id].status

    def status(self, iid: str) -> InstanceStatus:
        return self.instances[iid].status


CHILD = {
    "id": "child",
    "params": {"region": {"type": "string", "value": "us"}},
    "steps": [
        {"id": "copy", "type": "shell", "command": "true", "retry_policy": {"user_limit": 0}}
    ],
}


def parent(**step: Any) -> dict[str, Any]:
    return {
        "id": "parent",
        "steps": [
            {
                "id": "load",
                "type": "subworkflow",
                "workflow": "child",
                "params": {"region": {"type": "string", "value": "eu"}},
                "retry_policy": {"user_limit": 0},
                "next": ["after"],
                **step,
            },
            {"id": "after", "type": "noop"},
        ],
    }


def test_a_sync_subworkflow_runs_the_child_and_takes_its_outputs() -> None:
    w = World()
    w.push(CHILD)
    w.push(parent())
    w.start("parent", "p~1")
    child = child_id("p~1", "load", 1)
    assert child == "p~1~load~1"
    assert w.step("p~1", "load") is StepStatus.RUNNING
    assert w.status(child) is InstanceStatus.IN_PROGRESS
    assert json.loads(w.instances[child].params) == {"region": "eu"}  # the step's params
    assert (w.instances[child].parent_instance_id, w.instances[child].depth) == ("p~1", 1)

    attempt = w.instances[child].steps["copy"].attempt
    log = w.when(ReportAttemptSucceeded(child, "copy", attempt, '{"rows":7}'))
    assert log == [
        f"{child} StepAttemptSucceeded",
        f"{child} InstanceSucceeded",
        "p~1 StepAttemptSucceeded",
        "p~1 StepAttemptCreated",  # `after`
    ]
    assert json.loads(w.instances["p~1"].steps["load"].outputs or "") == {"copy": {"rows": 7}}


def test_a_failed_child_fails_the_step_with_the_reason() -> None:
    w = World()
    w.push(CHILD)
    w.push(parent())
    w.start("parent", "p~1")
    child = child_id("p~1", "load", 1)
    w.when(ReportAttemptFailed(child, "copy", 1, FailureKind.USER, "disk full"))
    assert w.status(child) is InstanceStatus.FAILED
    assert w.step("p~1", "load") is StepStatus.USER_FAILED
    assert w.status("p~1") is InstanceStatus.FAILED


def test_stopping_the_parent_stops_the_child() -> None:
    w = World()
    w.push(CHILD)
    w.push(parent())
    w.start("parent", "p~1")
    child = child_id("p~1", "load", 1)
    log = w.when(StopInstance("p~1", "enough"))
    assert log[:2] == ["p~1 StepStopped", "p~1 InstanceStopped"]
    assert f"{child} InstanceStopped" in log
    assert w.status(child) is InstanceStatus.STOPPED
    assert w.instances[child].steps["copy"].status is StepStatus.STOPPED


def test_a_child_that_cannot_start_fails_the_step_and_is_never_lost() -> None:
    w = World()
    w.push(parent())  # no workflow `child` yet
    w.start("parent", "p~1")
    assert w.step("p~1", "load") is StepStatus.USER_FAILED
    assert w.status("p~1") is InstanceStatus.FAILED
    assert child_id("p~1", "load", 1) not in w.instances

    w.push({**CHILD, "params": {"region": {"type": "string", "value": "us", "mode": "CONSTANT"}}})
    w.start("parent", "p~2")  # `region` is CONSTANT in the child: the override is refused
    assert w.step("p~2", "load") is StepStatus.USER_FAILED


def test_an_async_subworkflow_succeeds_at_once_and_the_child_runs_on_its_own() -> None:
    w = World()
    w.push(CHILD)
    w.push(parent(sync=False))
    w.start("parent", "p~1")
    child = child_id("p~1", "load", 1)
    assert w.step("p~1", "load") is StepStatus.SUCCEEDED
    assert json.loads(w.instances["p~1"].steps["load"].outputs or "") == {"instance_id": child}
    assert w.instances[child].parent_instance_id is None
    w.when(StopInstance("p~1"))
    assert w.status(child) is InstanceStatus.IN_PROGRESS  # not linked: not stopped


def test_nesting_deeper_than_ten_fails_the_deepest_step() -> None:
    w = World()
    # A workflow that runs itself: every level starts the next, until the limit.
    w.push(
        {
            "id": "loop",
            "steps": [
                {
                    "id": "again",
                    "type": "subworkflow",
                    "workflow": "loop",
                    "retry_policy": {"user_limit": 0},
                }
            ],
        }
    )
    w.start("loop", "r~1")
    depths = sorted(s.depth for s in w.instances.values())
    assert depths == list(range(11))  # 0 (the root) to 10
    # The deepest one's child could not start, and every level failed in turn.
    assert all(s.status is InstanceStatus.FAILED for s in w.instances.values())
