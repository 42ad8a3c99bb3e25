"""Run strategies: the workflow aggregate admits instances, in given/when/then form.

`World` plays the engine's part without Kafka: it decides a command on its aggregate, then
the commands that decision sends, in order, as a shard does for aggregates of its partition.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.domain.kernel.statuses import FailureKind, InstanceStatus
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    DequeueInstance,
    PushWorkflow,
    ReportAttemptFailed,
    ReportAttemptSucceeded,
    RestartInstance,
    StartInstance,
    StopInstance,
    UnblockWorkflow,
)
from services.domain.protocol.events import InstanceDequeued
from services.domain.workflow import admission
from services.domain.workflow.state import WorkflowState
from tests.unit.domain import given


def definition(strategy: Any) -> str:
    return parse_workflow(
        {
            "id": "wf",
            "run_strategy": strategy,
            "steps": [
                {
                    "id": "work",
                    "type": "shell",
                    "command": "true",
                    "retry_policy": {"user_limit": 0},
                }
            ],
        }
    ).to_json()


class World(given.World):
    """One workflow, `wf`, with the given run strategy."""

    def __init__(self, strategy: Any) -> None:
        super().__init__()
        self.definition = definition(strategy)
        self.when(PushWorkflow("wf", self.definition))
        self.log.clear()

    @property
    def workflow(self) -> WorkflowState | None:
        return self.workflows.get("wf")

    def start(self, iid: str) -> list[str]:
        return self.when(
            StartInstance(iid, "wf", 1, self.definition, "{}", "test", None, admitted=False)
        )

    def succeed(self, iid: str) -> list[str]:
        attempt = self.instances[iid].steps["work"].attempt
        return self.when(ReportAttemptSucceeded(iid, "work", attempt))

    def fail(self, iid: str) -> list[str]:
        attempt = self.instances[iid].steps["work"].attempt
        return self.when(ReportAttemptFailed(iid, "work", attempt, FailureKind.USER, "boom"))

    def status(self, iid: str) -> InstanceStatus | None:
        state = self.instances.get(iid)
        return None if state is None else state.status

    def blocked_by(self) -> str | None:
        return self.workflow.blocked_by if self.workflow else None

    @property
    def running(self) -> set[str]:
        return set(self.workflow.running) if self.workflow else set()

    @property
    def queued(self) -> list[str]:
        return [q.instance_id for q in self.workflow.queue] if self.workflow else []


def test_sequential_is_the_default_and_runs_one_at_a_time_in_order() -> None:
    w = World("SEQUENTIAL")
    assert parse_workflow(
        {"id": "x", "steps": [{"id": "a", "type": "noop"}]}
    ).run_strategy.rule.value == ("SEQUENTIAL")
    assert w.start("i1") == ["wf InstanceAdmitted", "i1 InstanceStarted", "i1 StepAttemptCreated"]
    assert w.start("i2") == ["wf InstanceQueued"]
    assert w.start("i3") == ["wf InstanceQueued"]
    assert w.status("i2") is None and w.queued == ["i2", "i3"]
    # i1 ends: its place goes to i2, in the same decision chain.
    assert w.succeed("i1") == [
        "i1 StepAttemptSucceeded",
        "i1 InstanceSucceeded",
        "wf InstanceReleased",
        "wf InstanceAdmitted",
        "i2 InstanceStarted",
        "i2 StepAttemptCreated",
    ]
    assert w.running == {"i2"} and w.queued == ["i3"]


def test_a_duplicate_start_takes_no_second_place() -> None:
    w = World("SEQUENTIAL")
    w.start("i1")
    w.start("i2")
    assert w.start("i1") == []  # running: the instance exists
    assert w.start("i2") == []  # queued: the workflow knows it
    w.succeed("i1")
    w.succeed("i2")
    assert w.start("i1") == []  # ended long ago: still the same instance
    assert w.running == set() and w.queued == []


def test_parallel_admits_up_to_its_limit_and_zero_holds_everything() -> None:
    w = World({"rule": "PARALLEL", "max": 2})
    for iid in ("i1", "i2", "i3"):
        w.start(iid)
    assert w.running == {"i1", "i2"} and w.queued == ["i3"]
    w.fail("i2")  # a failure frees its place like any end
    assert w.running == {"i1", "i3"}

    held = World({"rule": "PARALLEL", "max": 0})
    assert held.start("i1") == ["wf InstanceQueued"]
    assert held.status("i1") is None and held.queued == ["i1"]


def test_a_new_version_with_a_larger_limit_admits_whoever_waits() -> None:
    w = World({"rule": "PARALLEL", "max": 0})
    w.start("i1")
    w.start("i2")
    larger = definition({"rule": "PARALLEL", "max": 1})
    assert w.when(PushWorkflow("wf", larger)) == [
        "wf WorkflowVersionCreated",
        "wf WorkflowActivated",
        "wf InstanceAdmitted",
        "i1 InstanceStarted",
        "i1 StepAttemptCreated",
    ]
    assert w.queued == ["i2"]


def test_strict_sequential_a_failure_blocks_until_unblock_or_restart() -> None:
    w = World("STRICT_SEQUENTIAL")
    w.start("i1")
    w.start("i2")
    w.start("i3")
    assert w.fail("i1")[-2:] == ["i1 InstanceFailed", "wf InstanceReleased"]
    assert w.blocked_by() == "i1"
    assert w.running == set() and w.queued == ["i2", "i3"]  # blocked
    assert w.when(UnblockWorkflow("wf", "i2")) == []  # not the one blocking
    assert w.when(UnblockWorkflow("wf", "i1"))[:3] == [
        "wf WorkflowUnblocked",
        "wf InstanceAdmitted",
        "i2 InstanceStarted",
    ]
    w.fail("i2")
    assert w.blocked_by() == "i2"
    # A restart of the blocking run unblocks the queue and runs at once, holding a place.
    restarted = w.when(RestartInstance("i2"))
    assert restarted[:2] == ["i2 InstanceRestarted", "i2 StepAttemptCreated"]
    assert "wf InstanceAdmitted" in restarted
    assert w.blocked_by() is None and w.running == {"i2"} and w.queued == ["i3"]
    w.succeed("i2")
    assert w.running == {"i3"}


def test_a_stopped_run_does_not_block_a_strict_queue() -> None:
    w = World("STRICT_SEQUENTIAL")
    w.start("i1")
    w.start("i2")
    w.when(StopInstance("i1", "not today"))
    assert w.blocked_by() is None and w.running == {"i2"}


def test_first_only_drops_a_start_while_one_runs() -> None:
    w = World("FIRST_ONLY")
    w.start("i1")
    assert w.start("i2") == ["wf InstanceQueued", "wf InstanceDequeued"]
    assert w.status("i2") is None and w.running == {"i1"} and w.queued == []
    w.succeed("i1")
    assert w.start("i3")[0] == "wf InstanceAdmitted"


def test_last_only_stops_the_running_one_and_starts_the_new_one() -> None:
    w = World("LAST_ONLY")
    w.start("i1")
    assert w.start("i2") == [
        "wf InstanceQueued",
        "i1 StepStopped",
        "i1 InstanceStopped",
        "wf InstanceReleased",
        "wf InstanceAdmitted",
        "i2 InstanceStarted",
        "i2 StepAttemptCreated",
    ]
    assert w.status("i1") is InstanceStatus.STOPPED and w.running == {"i2"}


def test_serial_latest_only_replaces_the_queued_start_never_the_running_one() -> None:
    w = World("SERIAL_LATEST_ONLY")
    w.start("i1")
    w.start("i2")
    assert w.start("i3") == ["wf InstanceDequeued", "wf InstanceQueued"]
    assert w.queued == ["i3"] and w.running == {"i1"}
    w.succeed("i1")
    assert w.running == {"i3"}
    assert w.status("i2") is None


def test_a_queued_instance_can_be_taken_out_and_a_dequeue_that_lost_the_race_stops_it() -> None:
    w = World("SEQUENTIAL")
    w.start("i1")
    w.start("i2")
    assert w.when(DequeueInstance("wf", "i2", "changed my mind")) == ["wf InstanceDequeued"]
    assert w.queued == []
    # i1 runs: the dequeue arrived after it was admitted, so it is stopped instead.
    assert w.when(DequeueInstance("wf", "i1", "too late"))[-2:] == [
        "i1 InstanceStopped",
        "wf InstanceReleased",
    ]
    assert w.running == set()


def test_an_instance_not_admitted_by_the_workflow_is_ignored_when_it_ends() -> None:
    w = World("SEQUENTIAL")
    # Started directly (a child, a harness): outside the run strategy.
    w.when(StartInstance("x", "wf", 1, w.definition, "{}", "test", None))
    assert w.succeed("x")[-1] == "x InstanceSucceeded"
    assert w.running == set()
    assert w.start("i1")[0] == "wf InstanceAdmitted"


def test_a_start_beyond_a_full_queue_is_dropped_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "MAX_QUEUED", 2)
    w = World("SEQUENTIAL")
    for iid in ("i1", "i2", "i3"):
        w.start(iid)
    assert w.start("i4") == ["wf InstanceQueued", "wf InstanceDequeued"]
    [dropped] = [e.payload for e in w.histories[("workflow", "wf")][-1:]]
    assert isinstance(dropped, InstanceDequeued) and dropped.instance_id == "i4"
    assert dropped.reason == "the queue is full: 2 starts wait"
    assert w.queued == ["i2", "i3"] and w.status("i4") is None
    w.succeed("i1")  # a place frees: the next start is queued again
    assert w.start("i5") == ["wf InstanceQueued"]
    assert w.queued == ["i3", "i5"]


def test_a_long_queue_keeps_its_order_through_admissions_and_dequeues() -> None:
    w = World("SEQUENTIAL")
    ids = [f"i{n:05}" for n in range(3000)]
    for iid in ids:
        w.start(iid)
    for iid in ids[1:3000:3]:  # every third waiting start taken out, from the middle too
        w.when(DequeueInstance("wf", iid, "test"))
    left = [iid for iid in ids[1:] if iid not in set(ids[1:3000:3])]
    assert w.queued == left
    for expected in left[:50]:  # each end admits the next in order
        w.succeed(next(iter(w.running)))
        assert w.running == {expected}
    assert w.queued == left[50:]
