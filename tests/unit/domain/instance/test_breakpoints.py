"""Breakpoints set on a workflow: every instance of it pauses at the step, whether it runs
already or starts later, in its loops' iterations too, until the breakpoint is cleared."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.domain.instance.evolve import fold
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import InstanceStatus, RestartMode, StepStatus
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    PauseStep,
    PushWorkflow,
    ReportAttemptSucceeded,
    RestartInstance,
    ResumeStep,
    SetWorkflowBreakpoint,
    StartInstance,
)
from services.domain.protocol.routing import iteration_id
from tests.unit.domain import given


def _shell(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "shell", "command": "true", **fields}


CHAIN = {
    "id": "wf",
    "run_strategy": "PARALLEL",
    "steps": [_shell("a", next=["b"]), _shell("b")],
}
LOOP = {
    "id": "wf",
    "steps": [
        {
            "id": "each",
            "type": "foreach",
            "items": [1, 2, 3],
            "concurrency": 2,
            "steps": [
                _shell("work"),
                {
                    "id": "inner",
                    "type": "foreach",
                    "items": [1],
                    "steps": [_shell("leaf")],
                },
            ],
        }
    ],
}


class World(given.World):
    def push(self, definition: dict[str, Any]) -> None:
        self.definition = parse_workflow(definition).to_json()
        self.when(PushWorkflow(definition["id"], self.definition))

    def start(self, iid: str, workflow_id: str = "wf") -> list[str]:
        text = self.workflows[workflow_id].definitions[self.workflows[workflow_id].latest_version]
        return self.when(StartInstance(iid, workflow_id, 1, text, "{}", "t", None, admitted=False))

    def succeed(self, iid: str, step_id: str) -> list[str]:
        attempt = self.instances[iid].steps[step_id].attempt
        return self.when(ReportAttemptSucceeded(iid, step_id, attempt, "{}"))

    def step(self, iid: str, step_id: str) -> StepStatus:
        return self.instances[iid].steps[step_id].status


def test_instances_started_after_a_breakpoint_is_set_pause_at_it() -> None:
    w = World()
    w.push(CHAIN)
    # Given a breakpoint set on the workflow's step b
    assert w.when(SetWorkflowBreakpoint("wf", "b")) == ["wf WorkflowBreakpointSet"]
    # When an instance starts, it is admitted with it, and records it as it starts
    log = w.start("i-1")
    assert log == [
        "wf InstanceAdmitted",
        "i-1 InstanceStarted",
        "i-1 BreakpointSet",
        "i-1 StepAttemptCreated",
    ]
    assert w.instances["i-1"].workflow_breakpoints == frozenset({"b"})
    # Then b pauses once it is ready, and nothing else stops
    assert w.step("i-1", "a") is StepStatus.STARTING
    assert w.succeed("i-1", "a")[-1] == "i-1 StepPaused"
    assert w.step("i-1", "b") is StepStatus.PAUSED
    assert w.instances["i-1"].status is InstanceStatus.IN_PROGRESS


def test_setting_a_breakpoint_reaches_the_instances_running_now() -> None:
    w = World()
    w.push(CHAIN)
    w.start("i-1")
    w.start("i-2")
    log = w.when(SetWorkflowBreakpoint("wf", "b"))
    assert log == ["wf WorkflowBreakpointSet", "i-1 BreakpointSet", "i-2 BreakpointSet"]
    w.succeed("i-1", "a")
    assert w.step("i-1", "b") is StepStatus.PAUSED


def test_setting_it_twice_or_clearing_one_not_set_changes_nothing() -> None:
    w = World()
    w.push(CHAIN)
    w.start("i-1")
    w.when(SetWorkflowBreakpoint("wf", "b"))
    assert w.when(SetWorkflowBreakpoint("wf", "b")) == []
    assert w.when(SetWorkflowBreakpoint("wf", "a", enabled=False)) == []


def test_clearing_releases_the_paused_steps_and_later_instances_run_through() -> None:
    w = World()
    w.push(CHAIN)
    w.when(SetWorkflowBreakpoint("wf", "b"))
    w.start("i-1")
    w.start("i-2")
    w.succeed("i-1", "a")  # i-1 is paused at b; i-2 has not reached it
    log = w.when(SetWorkflowBreakpoint("wf", "b", enabled=False))
    assert log == [
        "wf WorkflowBreakpointSet",
        "i-1 BreakpointSet",
        "i-1 StepResumed",
        "i-1 StepAttemptCreated",
        "i-2 BreakpointSet",
    ]
    assert w.step("i-1", "b") is StepStatus.STARTING
    assert (
        w.instances["i-1"].workflow_breakpoints
        == w.instances["i-2"].workflow_breakpoints
        == frozenset()
    )
    assert w.workflows["wf"].breakpoints == frozenset()
    w.succeed("i-2", "a")
    assert w.step("i-2", "b") is StepStatus.STARTING
    w.start("i-3")
    assert w.instances["i-3"].workflow_breakpoints == frozenset()


def test_a_step_resumed_by_hand_is_released_and_the_breakpoint_stays() -> None:
    w = World()
    w.push(CHAIN)
    w.when(SetWorkflowBreakpoint("wf", "b"))
    w.start("i-1")
    w.succeed("i-1", "a")
    assert w.when(ResumeStep("i-1", "b")) == ["i-1 StepResumed", "i-1 StepAttemptCreated"]
    assert w.instances["i-1"].workflow_breakpoints == frozenset({"b"})


def test_clearing_the_workflows_breakpoint_leaves_the_instances_own() -> None:
    w = World()
    w.push(CHAIN)
    w.when(SetWorkflowBreakpoint("wf", "b"))
    w.start("i-1")
    w.when(PauseStep("i-1", "b"))  # set on the instance by hand as well
    w.succeed("i-1", "a")
    assert w.when(SetWorkflowBreakpoint("wf", "b", enabled=False)) == [
        "wf WorkflowBreakpointSet",
        "i-1 BreakpointSet",
    ]
    assert w.step("i-1", "b") is StepStatus.PAUSED  # its own breakpoint holds it
    assert w.instances["i-1"].breakpoints == frozenset({"b"})


def test_a_restarted_instance_no_longer_pauses_where_a_cleared_breakpoint_was() -> None:
    w = World()
    w.push(CHAIN)
    w.when(SetWorkflowBreakpoint("wf", "b"))
    w.start("i-1")
    w.succeed("i-1", "a")
    w.when(ResumeStep("i-1", "b"))
    w.succeed("i-1", "b")
    assert w.instances["i-1"].status is InstanceStatus.SUCCEEDED
    w.when(SetWorkflowBreakpoint("wf", "b", enabled=False))  # it is over: nothing is sent
    log = w.when(RestartInstance("i-1", mode=RestartMode.FROM_BEGINNING))
    assert log[-2:] == ["wf InstanceAdmitted", "i-1 BreakpointSet"]  # cleared in it too
    w.succeed("i-1", "a")
    assert w.step("i-1", "b") is StepStatus.STARTING


def test_a_step_no_version_has_is_rejected() -> None:
    w = World()
    w.push(CHAIN)
    with pytest.raises(Rejected, match="no version of workflow 'wf' has a step 'nope'"):
        w.when(SetWorkflowBreakpoint("wf", "nope"))
    with pytest.raises(Rejected, match="workflow 'other' has no version"):
        w.when(SetWorkflowBreakpoint("other", "b"))


def test_a_step_of_an_older_version_is_accepted_and_later_versions_ignore_it() -> None:
    w = World()
    w.push(CHAIN)
    w.push({**CHAIN, "steps": [_shell("a", next=["c"]), _shell("c")]})
    assert w.when(SetWorkflowBreakpoint("wf", "b")) == ["wf WorkflowBreakpointSet"]
    log = w.start("i-1")  # of version 2: it has no step b
    assert "i-1 BreakpointSet" not in log
    assert w.instances["i-1"].workflow_breakpoints == frozenset()


def test_a_breakpoint_on_a_loop_body_step_pauses_it_in_every_iteration() -> None:
    w = World()
    w.push(LOOP)
    w.when(SetWorkflowBreakpoint("wf", "work"))
    w.start("p")
    first = iteration_id("p", "each", 1, 0)
    # The parent keeps it for its body; each iteration starts with it and pauses there.
    assert w.instances["p"].workflow_breakpoints == frozenset({"work"})
    assert w.instances[first].workflow_breakpoints == frozenset({"work"})
    assert w.step(first, "work") is StepStatus.PAUSED
    assert w.step(iteration_id("p", "each", 1, 1), "work") is StepStatus.PAUSED
    # Cleared: the running iterations are released, and later ones run through.
    w.when(SetWorkflowBreakpoint("wf", "work", enabled=False))
    assert w.step(first, "work") is StepStatus.STARTING
    w.succeed(first, "work")
    w.succeed(iteration_id(first, "inner", 1, 0), "leaf")
    third = iteration_id("p", "each", 1, 2)
    assert w.instances[third].workflow_breakpoints == frozenset()
    assert w.step(third, "work") is StepStatus.STARTING


def test_a_breakpoint_set_during_a_loop_reaches_its_running_iterations_at_any_depth() -> None:
    w = World()
    w.push(LOOP)
    w.start("p")
    first = iteration_id("p", "each", 1, 0)
    leaf = iteration_id(first, "inner", 1, 0)
    log = w.when(SetWorkflowBreakpoint("wf", "leaf"))
    # From the workflow to the instance, to its running iterations, to theirs.
    assert log[:3] == ["wf WorkflowBreakpointSet", "p BreakpointSet", f"{first} BreakpointSet"]
    assert f"{leaf} BreakpointSet" in log
    assert w.instances[leaf].workflow_breakpoints == frozenset({"leaf"})
    # The leaf had started before: it runs on; a later iteration's leaf pauses.
    assert w.step(leaf, "leaf") is StepStatus.STARTING
    w.succeed(first, "work")
    w.succeed(leaf, "leaf")
    third = iteration_id("p", "each", 1, 2)
    assert w.instances[third].workflow_breakpoints == frozenset({"leaf"})
    assert w.step(iteration_id(third, "inner", 1, 0), "leaf") is StepStatus.PAUSED


def test_a_subworkflow_child_starts_with_its_own_workflows_breakpoints() -> None:
    w = World()
    w.push({"id": "child", "steps": [_shell("copy")]})
    w.push({"id": "parent", "steps": [{"id": "run", "type": "subworkflow", "workflow": "child"}]})
    w.when(SetWorkflowBreakpoint("child", "copy"))
    w.start("p", "parent")
    child = next(iid for iid in w.instances if iid != "p")
    assert w.step(child, "copy") is StepStatus.PAUSED


def test_a_finished_instance_restarted_later_gets_the_breakpoints_set_meanwhile() -> None:
    w = World()
    w.push(CHAIN)
    w.start("i-1")
    w.succeed("i-1", "a")
    w.succeed("i-1", "b")
    assert w.instances["i-1"].status is InstanceStatus.SUCCEEDED
    w.when(SetWorkflowBreakpoint("wf", "b"))
    log = w.when(RestartInstance("i-1", mode=RestartMode.FROM_BEGINNING))
    assert log[-2:] == ["wf InstanceAdmitted", "i-1 BreakpointSet"]
    w.succeed("i-1", "a")
    assert w.step("i-1", "b") is StepStatus.PAUSED


def test_a_replay_of_the_instances_events_gives_the_same_breakpoints() -> None:
    w = World()
    w.push(LOOP)
    w.when(SetWorkflowBreakpoint("wf", "work"))
    w.start("p")
    first = iteration_id("p", "each", 1, 0)
    state = w.instances[first]
    # The events alone carry what StartInstance brought: a replay needs no command.
    assert json.loads(state.loop or "") == {"index": 0, "item": 1}
    replayed = fold(list(w.events[first]))
    assert replayed == state
