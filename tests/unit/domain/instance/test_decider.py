"""The instance lifecycle in given-events / when-command / then-events form."""

from __future__ import annotations

import pytest

from services.domain.decider import decide
from services.domain.instance.scheduler import next_deadline
from services.domain.instance.tasks import cancellations, tasks_for
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import FailureKind, InstanceStatus, RestartMode, StepStatus
from services.domain.protocol.commands import (
    ExpireHeartbeat,
    FireTimers,
    KillInstance,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    RestartInstance,
    StartInstance,
    StopInstance,
)
from services.domain.protocol.events import (
    InstanceFailed,
    InstanceRestarted,
    InstanceStarted,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepStopped,
)
from tests.unit.domain.given import IID, History, S, diamond, start, workflow_json

FIXED_1S = {"type": "fixed", "user_seconds": 1, "platform_seconds": 1, "timeout_seconds": 1}


def succeed(h: History, step: str, attempt: int = 1, at: int = 0) -> list[str]:
    h.when(ReportAttemptStarted(IID, step, attempt, "w1"), at)
    return h.types(ReportAttemptSucceeded(IID, step, attempt, "{}"), at)


def test_start_creates_root_attempts_and_their_tasks() -> None:
    h = History()
    events = decide(None, start(diamond()), 0).events
    assert [e.type for e in events] == ["InstanceStarted", "StepAttemptCreated"]
    assert [e.seq for e in events] == [1, 2]
    assert [e.event_id for e in events] == [f"{IID}:1", f"{IID}:2"]
    h.events.extend(events)
    assert h.state is not None
    tasks = tasks_for(h.state, events)
    assert [(t.step_id, t.attempt, t.queue) for t in tasks] == [("a", 1, "default")]


def test_diamond_fans_out_and_joins_only_when_both_branches_succeeded() -> None:
    h = History()
    h.when(start(diamond()))
    assert succeed(h, "a") == ["StepAttemptSucceeded", "StepAttemptCreated", "StepAttemptCreated"]
    assert succeed(h, "b") == ["StepAttemptSucceeded"]  # d still waits for c
    assert succeed(h, "c") == ["StepAttemptSucceeded", "StepAttemptCreated"]
    assert succeed(h, "d") == ["StepAttemptSucceeded", "InstanceSucceeded"]
    assert h.state is not None and h.state.status is InstanceStatus.SUCCEEDED


def test_duplicate_start_and_duplicate_reports_decide_nothing() -> None:
    h = History()
    h.when(start(diamond()))
    assert h.when(start(diamond())) == []
    h.when(ReportAttemptStarted(IID, "a", 1, "w1"))
    assert h.when(ReportAttemptStarted(IID, "a", 1, "w2")) == []
    h.when(ReportAttemptSucceeded(IID, "a", 1, "{}"))
    assert h.when(ReportAttemptSucceeded(IID, "a", 1, "{}")) == []
    assert h.when(ReportAttemptFailed(IID, "a", 1, FailureKind.USER, "late")) == []


def test_report_for_an_old_attempt_is_stale() -> None:
    h = History()
    h.when(start(diamond(retry_policy={"user_limit": 1, "backoff": FIXED_1S})))
    succeed(h, "a")
    h.when(ReportAttemptStarted(IID, "b", 1, "w1"))
    h.when(ReportAttemptFailed(IID, "b", 1, FailureKind.USER, "boom"), 0)
    h.when(FireTimers(IID), 1 * S)
    assert h.when(ReportAttemptSucceeded(IID, "b", 1, "{}"), 1 * S) == []
    assert h.types(ReportAttemptSucceeded(IID, "b", 2, "{}"), 1 * S) == ["StepAttemptSucceeded"]


def test_user_failures_retry_within_budget_then_succeed() -> None:
    h = History()
    h.when(start(diamond(retry_policy={"user_limit": 2, "backoff": FIXED_1S})))
    succeed(h, "a")
    for attempt in (1, 2):
        h.when(ReportAttemptStarted(IID, "b", attempt, "w"), 0)
        (failed,) = h.when(ReportAttemptFailed(IID, "b", attempt, FailureKind.USER, "x"), 10)
        assert isinstance(failed, StepAttemptFailed)
        assert failed.step_status is StepStatus.WAITING_FOR_RETRY
        assert failed.retry_at == 10 + S
        assert h.when(FireTimers(IID), 10 + S - 1) == []  # not due yet
        (created,) = h.when(FireTimers(IID), 10 + S)
        assert isinstance(created, StepAttemptCreated) and created.attempt == attempt + 1
    assert succeed(h, "b", attempt=3)[0] == "StepAttemptSucceeded"


def test_retry_budgets_are_separate_per_failure_class() -> None:
    policy = {"user_limit": 0, "platform_limit": 1, "backoff": FIXED_1S}
    h = History()
    h.when(start(diamond(retry_policy=policy)))
    succeed(h, "a")
    h.when(ReportAttemptStarted(IID, "b", 1, "w"))
    (p,) = h.when(ReportAttemptFailed(IID, "b", 1, FailureKind.PLATFORM, "oom"))
    assert isinstance(p, StepAttemptFailed) and p.step_status is StepStatus.WAITING_FOR_RETRY
    h.when(FireTimers(IID), S)
    h.when(ReportAttemptStarted(IID, "b", 2, "w"), S)
    (u, *rest) = h.when(ReportAttemptFailed(IID, "b", 2, FailureKind.USER, "bug"), S)
    assert isinstance(u, StepAttemptFailed) and u.step_status is StepStatus.USER_FAILED
    # c is still running: FAIL_AFTER_RUNNING lets it finish before the instance fails
    assert rest == []
    assert succeed(h, "c") == ["StepAttemptSucceeded", "InstanceFailed"]
    assert h.state is not None and h.state.status is InstanceStatus.FAILED
    assert h.state.steps["d"].status is StepStatus.NOT_CREATED


def test_exponential_backoff_is_capped_per_class() -> None:
    policy = {
        "user_limit": 5,
        "backoff": {
            "type": "exponential",
            "base_seconds": 2,
            "exponent": 3,
            "user_max_seconds": 10,
        },
    }
    h = History()
    h.when(start(diamond(retry_policy=policy)))
    succeed(h, "a")
    delays = []
    now = 0
    for attempt in (1, 2, 3):
        h.when(ReportAttemptStarted(IID, "b", attempt, "w"), now)
        (f,) = h.when(ReportAttemptFailed(IID, "b", attempt, FailureKind.USER, "x"), now)
        assert isinstance(f, StepAttemptFailed) and f.retry_at is not None
        delays.append((f.retry_at - now) / S)
        now = f.retry_at
        h.when(FireTimers(IID), now)
    assert delays == [2.0, 6.0, 10.0]


def test_non_retryable_step_fails_fatally_at_first_failure() -> None:
    h = History()
    h.when(start(diamond(retry_policy={"retryable": False})))
    succeed(h, "a")
    h.when(ReportAttemptStarted(IID, "b", 1, "w"))
    (f,) = h.when(ReportAttemptFailed(IID, "b", 1, FailureKind.USER, "x"))
    assert isinstance(f, StepAttemptFailed) and f.step_status is StepStatus.FATALLY_FAILED


def test_fail_immediately_stops_running_branches() -> None:
    h = History()
    policy = {"user_limit": 0}
    h.when(start(diamond(retry_policy=policy, failure_mode="FAIL_IMMEDIATELY")))
    succeed(h, "a")
    h.when(ReportAttemptStarted(IID, "b", 1, "w"))
    out = h.when(ReportAttemptFailed(IID, "b", 1, FailureKind.USER, "x"))
    assert [type(p).__name__ for p in out] == ["StepAttemptFailed", "StepStopped", "InstanceFailed"]
    stopped = out[1]
    assert isinstance(stopped, StepStopped) and stopped.step_id == "c"
    failed = out[2]
    assert isinstance(failed, InstanceFailed) and failed.failed_steps == ("b",)


def test_ignore_failure_completes_with_error_and_successors_run() -> None:
    h = History()
    h.when(start(diamond(retry_policy={"user_limit": 0}, failure_mode="ignore_failure")))
    succeed(h, "a")
    succeed(h, "c")
    h.when(ReportAttemptStarted(IID, "b", 1, "w"))
    out = h.when(ReportAttemptFailed(IID, "b", 1, FailureKind.USER, "x"))
    assert isinstance(out[0], StepAttemptFailed)
    assert out[0].step_status is StepStatus.COMPLETED_WITH_ERROR
    assert isinstance(out[1], StepAttemptCreated) and out[1].step_id == "d"
    assert succeed(h, "d") == ["StepAttemptSucceeded", "InstanceSucceeded"]


def test_step_timeout_fails_the_attempt_as_a_timeout() -> None:
    h = History()
    h.when(start(diamond(timeout="5s")))
    succeed(h, "a")
    (started,) = h.when(ReportAttemptStarted(IID, "b", 1, "w"), 100)
    assert isinstance(started, StepAttemptStarted) and started.timeout_at == 100 + 5 * S
    assert h.state is not None and next_deadline(h.state) == 100 + 5 * S
    out = h.when(FireTimers(IID), 100 + 5 * S)
    assert isinstance(out[0], StepAttemptFailed)
    assert out[0].kind is FailureKind.TIMEOUT
    assert out[0].step_status is StepStatus.TIMEOUT_FAILED  # timeout_limit defaults to 0


def test_workflow_timeout_times_out_active_steps_and_the_instance() -> None:
    h = History()
    h.when(start(diamond({"timeout": "1m"})))
    assert h.state is not None and h.state.timeout_at == 60 * S
    out = h.types(FireTimers(IID), 60 * S)
    assert out == ["StepStopped", "InstanceTimedOut"]
    assert h.state.steps["a"].status is StepStatus.TIMED_OUT


def test_sleep_is_an_engine_timer() -> None:
    h = History()
    h.when(start(workflow_json([{"id": "z", "type": "sleep", "duration": "2s"}])), 0)
    assert h.state is not None and h.state.steps["z"].status is StepStatus.RUNNING
    assert tasks_for(h.state, h.events) == []
    assert h.when(FireTimers(IID), 2 * S - 1) == []
    assert h.types(FireTimers(IID), 2 * S) == ["StepAttemptSucceeded", "InstanceSucceeded"]


def test_stop_stops_active_steps_and_later_reports_change_nothing() -> None:
    h = History()
    h.when(start(diamond()))
    assert h.types(StopInstance(IID, "enough")) == ["StepStopped", "InstanceStopped"]
    assert h.state is not None and h.state.status is InstanceStatus.STOPPED
    assert h.when(ReportAttemptSucceeded(IID, "a", 1, "{}")) == []
    assert h.when(StopInstance(IID)) == []


def test_kill_fails_the_instance() -> None:
    h = History()
    h.when(start(diamond()))
    out = h.when(KillInstance(IID))
    assert isinstance(out[-1], InstanceFailed) and out[-1].killed


def test_restart_from_incomplete_reruns_only_what_did_not_succeed() -> None:
    h = History()
    h.when(start(diamond(retry_policy={"user_limit": 0})))
    succeed(h, "a")
    succeed(h, "c")
    h.when(ReportAttemptStarted(IID, "b", 1, "w"))
    h.when(ReportAttemptFailed(IID, "b", 1, FailureKind.USER, "x"))
    assert h.state is not None and h.state.status is InstanceStatus.FAILED
    out = h.when(RestartInstance(IID), 5 * S)
    assert isinstance(out[0], InstanceRestarted)
    assert out[0].run == 2 and out[0].reset_steps == ("b", "d")
    assert isinstance(out[1], StepAttemptCreated)
    assert (out[1].step_id, out[1].attempt, out[1].run) == ("b", 2, 2)
    succeed(h, "b", attempt=2)
    assert succeed(h, "d") == ["StepAttemptSucceeded", "InstanceSucceeded"]
    assert h.state.run == 2


def test_restart_from_beginning_and_restart_of_a_live_instance() -> None:
    h = History()
    h.when(start(diamond()))
    assert h.when(RestartInstance(IID)) == []  # live: nothing to restart
    h.when(StopInstance(IID))
    out = h.when(RestartInstance(IID, RestartMode.FROM_BEGINNING))
    assert isinstance(out[0], InstanceRestarted) and out[0].reset_steps == ("a", "b", "c", "d")


def test_heartbeat_is_not_a_transition_and_expiry_fails_as_platform() -> None:
    h = History()
    h.when(start(diamond(retry_policy={"platform_limit": 0})))
    h.when(ReportAttemptStarted(IID, "a", 1, "w"))
    assert h.when(ReportAttemptHeartbeat(IID, "a", 1, "w")) == []
    out = h.when(ExpireHeartbeat(IID, "a", 1, 31.0))
    assert isinstance(out[0], StepAttemptFailed) and out[0].kind is FailureKind.PLATFORM
    assert "silent" in out[0].message


def test_start_with_badly_typed_params_is_rejected() -> None:
    definition = workflow_json(
        [{"id": "a", "type": "noop"}], params={"rows": {"type": "long", "value": 1}}
    )
    with pytest.raises(Rejected, match=r"params\.rows"):
        decide(None, StartInstance(IID, "wf", 1, definition, '{"rows": "x"}', "t"), 0)


def test_params_are_resolved_into_the_started_event_and_the_attempt() -> None:
    definition = workflow_json(
        [{"id": "a", "type": "noop", "params": {"b": 2}}],
        params={"rows": {"type": "long", "value": 1}, "name": "x"},
    )
    h = History()
    out = h.when(StartInstance(IID, "wf", 1, definition, '{"rows": 7}', "t"))
    assert isinstance(out[0], InstanceStarted)
    assert out[0].params == '{"name":"x","rows":7}'
    assert isinstance(out[1], StepAttemptCreated)
    assert out[1].params == '{"b":2,"name":"x","rows":7}'


def test_cancellations_are_the_ends_a_worker_did_not_report() -> None:
    h = History()
    h.when(start(diamond(timeout="5s", retry_policy={"user_limit": 0})))
    succeed(h, "a")
    h.when(ReportAttemptStarted(IID, "b", 1, "w"), 0)
    h.when(ReportAttemptStarted(IID, "c", 1, "w"), 0)
    timed_out = decide(h.state, FireTimers(IID), 5 * S).events  # b's timeout fires in the engine
    assert [e.type for e in cancellations(timed_out)] == ["StepAttemptFailed"]
    user = History()
    user.when(start(diamond(retry_policy={"user_limit": 0})))
    user.when(ReportAttemptStarted(IID, "a", 1, "w"))
    reported = decide(user.state, ReportAttemptFailed(IID, "a", 1, FailureKind.USER, "x"), 0).events
    assert cancellations(reported) == []  # the worker reported it: nothing to cancel
    user.events.extend(reported)  # a now waits for its retry
    stopped = decide(user.state, StopInstance(IID), 0).events
    assert [e.type for e in cancellations(stopped)] == ["StepStopped"]


def test_restart_from_incomplete_of_a_succeeded_instance_decides_nothing() -> None:
    h = History()
    h.when(start(workflow_json([{"id": "only", "type": "noop"}])))
    succeed(h, "only")
    assert h.state is not None and h.state.status is InstanceStatus.SUCCEEDED
    assert h.when(RestartInstance(IID)) == []
    assert h.types(RestartInstance(IID, RestartMode.FROM_BEGINNING))[0] == "InstanceRestarted"


def test_a_retried_restart_restarts_once() -> None:
    h = History()
    h.when(start(diamond()))
    h.when(StopInstance(IID))
    assert h.types(RestartInstance(IID, expected_run=1))[0] == "InstanceRestarted"
    h.when(StopInstance(IID))  # run 2 ended before the retried request arrived
    assert h.when(RestartInstance(IID, expected_run=1)) == []
    assert h.types(RestartInstance(IID, expected_run=2))[0] == "InstanceRestarted"


def test_events_carry_the_issue_time_of_the_command_that_caused_them() -> None:
    h = History()
    h.when(start(diamond()))
    assert h.state is not None
    reported = decide(
        h.state, ReportAttemptSucceeded(IID, "a", 1, "{}"), 5_000, caused_at=4_200
    ).events
    h.events.extend(reported)
    assert {e.caused_at for e in reported} == {4_200}  # the result and the attempts it creates
    assert {e.occurred_at for e in reported} == {5_000}
    timers = decide(h.state, FireTimers(IID), 10**15).events  # the engine's own decision
    assert timers and {e.caused_at for e in timers} == {None}
