"""Instance and step actions, and the step concurrency, in given-events / when-command /
then-events form."""

from __future__ import annotations

import pytest

from services.domain.instance.scheduler import next_deadline
from services.domain.instance.tasks import cancellations
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import FailureKind, InstanceStatus, RestartMode, StepStatus
from services.domain.protocol.commands import (
    FireTimers,
    PauseInstance,
    PauseStep,
    ReportAttemptFailed,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    ResumeStep,
    SkipStep,
    StopStep,
)
from services.domain.protocol.events import InstanceRestarted, InstanceStopped, StepSkipped
from tests.unit.domain.given import IID, History, S, start, workflow_json

NO_RETRY = {"user_limit": 0}


def run(h: History, step: str, attempt: int = 1, at: int = 0) -> list[str]:
    h.when(ReportAttemptStarted(IID, step, attempt, "w1"), at)
    return h.types(ReportAttemptSucceeded(IID, step, attempt, "{}"), at)


def fail(h: History, step: str, attempt: int = 1, at: int = 0) -> list[str]:
    h.when(ReportAttemptStarted(IID, step, attempt, "w1"), at)
    return h.types(ReportAttemptFailed(IID, step, attempt, FailureKind.USER, "boom"), at)


def status(h: History, step: str | None = None) -> str:
    assert h.state is not None
    return (h.state.steps[step].status if step else h.state.status).value


CHAIN = workflow_json(
    [
        {"id": "a", "type": "noop", "next": ["b"]},
        {"id": "b", "type": "noop"},
    ]
)
# a -> b -> d and a -> c -> d
DIAMOND = workflow_json(
    [
        {"id": "a", "type": "noop", "next": ["b", "c"]},
        {"id": "b", "type": "shell", "command": "x", "retry_policy": NO_RETRY, "next": ["d"]},
        {"id": "c", "type": "noop", "next": ["d"]},
        {"id": "d", "type": "noop"},
    ]
)


def test_given_a_paused_instance_when_a_step_ends_then_nothing_new_starts_until_resumed() -> None:
    h = History()
    h.when(start(CHAIN))
    assert h.types(PauseInstance(IID, "maintenance")) == ["InstancePaused"]
    assert h.when(PauseInstance(IID)) == []  # already paused
    assert run(h, "a") == ["StepAttemptSucceeded"]  # a's report still counts; b waits
    assert (status(h), status(h, "b")) == ("PAUSED", "NOT_CREATED")
    assert h.types(ResumeInstance(IID)) == ["InstanceResumed", "StepAttemptCreated"]
    assert run(h, "b") == ["StepAttemptSucceeded", "InstanceSucceeded"]


def test_given_a_paused_instance_with_nothing_left_to_start_then_the_run_still_ends() -> None:
    h = History()
    h.when(start(workflow_json([{"id": "a", "type": "noop"}])))
    h.when(PauseInstance(IID))
    assert run(h, "a") == ["StepAttemptSucceeded", "InstanceSucceeded"]


def test_given_a_due_retry_while_paused_then_it_waits_and_no_timer_spins() -> None:
    definition = workflow_json(
        [
            {
                "id": "a",
                "type": "shell",
                "command": "x",
                "retry_policy": {"user_limit": 1, "backoff": {"type": "fixed", "user_seconds": 1}},
            }
        ]
    )
    h = History()
    h.when(start(definition))
    fail(h, "a")
    h.when(PauseInstance(IID))
    assert h.when(FireTimers(IID), at=2 * S) == []
    assert h.state is not None and next_deadline(h.state) == h.state.timeout_at
    assert h.types(ResumeInstance(IID), at=3 * S) == ["InstanceResumed", "StepAttemptCreated"]


def test_given_a_step_concurrency_then_at_most_that_many_attempts_are_in_flight() -> None:
    definition = workflow_json(
        [
            {"id": "root", "type": "noop", "next": ["s1", "s2", "s3", "s4"]},
            *({"id": f"s{i}", "type": "noop"} for i in range(1, 5)),
        ],
        step_concurrency=2,
    )
    h = History()
    h.when(start(definition))
    assert run(h, "root") == ["StepAttemptSucceeded", "StepAttemptCreated", "StepAttemptCreated"]
    assert [status(h, f"s{i}") for i in range(1, 5)] == [
        "STARTING",
        "STARTING",
        "NOT_CREATED",
        "NOT_CREATED",
    ]
    # One attempt ends: one more starts.
    assert run(h, "s1") == ["StepAttemptSucceeded", "StepAttemptCreated"]
    assert status(h, "s3") == "STARTING" and status(h, "s4") == "NOT_CREATED"


def test_skipping_a_running_step_stops_its_attempt_and_lets_successors_run() -> None:
    h = History()
    h.when(start(CHAIN))
    h.when(ReportAttemptStarted(IID, "a", 1, "w1"))
    out = h.when(SkipStep(IID, "a", "done by hand"))
    assert [type(p).__name__ for p in out] == ["StepSkipped", "StepAttemptCreated"]
    skipped = out[0]
    assert isinstance(skipped, StepSkipped) and skipped.attempt == 1
    assert [e.type for e in cancellations(h.events[-2:])] == ["StepSkipped"]
    # The worker's late report of the skipped attempt changes nothing.
    assert h.when(ReportAttemptSucceeded(IID, "a", 1, "{}")) == []
    with pytest.raises(Rejected, match="no step 'ghost'"):
        h.when(SkipStep(IID, "ghost"))
    assert run(h, "b") == ["StepAttemptSucceeded", "InstanceSucceeded"]


def test_stopping_a_step_lets_other_branches_finish_then_the_run_ends_stopped() -> None:
    h = History()
    h.when(start(DIAMOND))
    run(h, "a")
    assert h.types(StopStep(IID, "b", "wrong input")) == ["StepStopped"]
    out = h.when(ReportAttemptStarted(IID, "c", 1, "w"))
    out = h.when(ReportAttemptSucceeded(IID, "c", 1, "{}"))
    assert [type(p).__name__ for p in out] == ["StepAttemptSucceeded", "InstanceStopped"]
    assert isinstance(out[-1], InstanceStopped) and out[-1].reason == "step(s) stopped: b"


def test_restarting_a_failed_step_in_a_live_run_gives_it_a_new_attempt_and_fresh_retries() -> None:
    h = History()
    h.when(start(DIAMOND))
    run(h, "a")
    assert fail(h, "b") == ["StepAttemptFailed"]  # c still runs: the run is live
    assert status(h, "b") == "USER_FAILED"
    assert h.types(RestartStep(IID, "b")) == ["StepRestarted", "StepAttemptCreated"]
    assert h.state is not None and h.state.steps["b"].attempt == 2
    assert h.state.steps["b"].user_failures == 0
    run(h, "b", attempt=2)
    assert run(h, "c") == ["StepAttemptSucceeded", "StepAttemptCreated"]
    assert run(h, "d") == ["StepAttemptSucceeded", "InstanceSucceeded"]


def test_a_restart_from_a_step_reruns_it_and_everything_downstream_only() -> None:
    h = History()
    h.when(start(DIAMOND))
    run(h, "a")
    run(h, "c")
    assert fail(h, "b")[-1] == "InstanceFailed"
    out = h.when(RestartInstance(IID, RestartMode.FROM_STEP, step_id="b"))
    restarted = out[0]
    assert isinstance(restarted, InstanceRestarted) and restarted.reset_steps == ("b", "d")
    assert status(h, "c") == "SUCCEEDED"
    assert status(h, "b") == "STARTING"


def test_a_restart_from_a_step_whose_upstream_did_not_complete_is_refused() -> None:
    h = History()
    h.when(start(DIAMOND))
    run(h, "a")
    run(h, "c")
    fail(h, "b")
    with pytest.raises(Rejected, match="upstream step b is USER_FAILED"):
        h.when(RestartInstance(IID, RestartMode.FROM_STEP, step_id="d"))


def test_actions_that_do_not_apply_decide_nothing() -> None:
    h = History()
    h.when(start(CHAIN))
    assert h.when(ResumeInstance(IID)) == []  # not paused
    assert h.when(StopStep(IID, "b")) == []  # not active
    assert h.when(RestartStep(IID, "a")) == []  # not failed
    run(h, "a")
    run(h, "b")
    assert status(h) == InstanceStatus.SUCCEEDED.value
    assert h.when(PauseInstance(IID)) == []
    assert h.when(SkipStep(IID, "a")) == []
    assert h.state is not None and h.state.steps["a"].status is StepStatus.SUCCEEDED


def test_a_step_with_a_breakpoint_pauses_before_it_starts_until_resumed() -> None:
    definition = workflow_json(
        [
            {"id": "a", "type": "noop", "next": ["b"]},
            {"id": "b", "type": "noop", "breakpoint": True, "next": ["c"]},
            {"id": "c", "type": "noop"},
        ]
    )
    h = History()
    h.when(start(definition))
    assert h.types(PauseStep(IID, "c")) == ["BreakpointSet"]  # set on c through the API
    assert run(h, "a") == ["StepAttemptSucceeded", "StepPaused"]
    assert (status(h), status(h, "b")) == ("IN_PROGRESS", "PAUSED")  # the run waits
    assert h.types(ResumeStep(IID, "b")) == ["StepResumed", "StepAttemptCreated"]
    assert run(h, "b") == ["StepAttemptSucceeded", "StepPaused"]
    assert h.types(ResumeStep(IID, "c")) == ["StepResumed", "StepAttemptCreated"]
    assert run(h, "c") == ["StepAttemptSucceeded", "InstanceSucceeded"]
    # The breakpoints stay: a new run pauses at them again, unless one is cleared first.
    h.when(RestartInstance(IID, RestartMode.FROM_BEGINNING))
    assert h.state is not None and h.state.breakpoints == frozenset({"b", "c"})
    assert h.types(ResumeStep(IID, "c")) == ["BreakpointSet"]  # c not reached yet: cleared
    assert h.state is not None and h.state.breakpoints == frozenset({"b"})


def test_stopping_an_instance_stops_a_step_paused_at_its_breakpoint() -> None:
    definition = workflow_json([{"id": "a", "type": "noop", "breakpoint": True}])
    h = History()
    assert h.types(start(definition)) == ["InstanceStarted", "StepPaused"]
    from services.domain.protocol.commands import StopInstance

    assert h.types(StopInstance(IID)) == ["StepStopped", "InstanceStopped"]
