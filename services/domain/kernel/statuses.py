"""Status machines of instances, steps and attempts, and the failure vocabulary.

Names follow Maestro where Maestro has the concept, so its users recognise them.
"""

from __future__ import annotations

from enum import StrEnum


class InstanceStatus(StrEnum):
    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    PAUSED = "PAUSED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_INSTANCE

    @property
    def is_live(self) -> bool:
        """Running or paused: attempts may be in flight, reports and timers still apply."""
        return self in (InstanceStatus.IN_PROGRESS, InstanceStatus.PAUSED)


_TERMINAL_INSTANCE = frozenset(
    {
        InstanceStatus.SUCCEEDED,
        InstanceStatus.FAILED,
        InstanceStatus.STOPPED,
        InstanceStatus.TIMED_OUT,
    }
)


class StepStatus(StrEnum):
    NOT_CREATED = "NOT_CREATED"
    # Stopped at a breakpoint before its attempt: waits for a resume of the step.
    PAUSED = "PAUSED"
    # Waits before its attempt for signals that meet its signal dependencies.
    WAITING_FOR_SIGNALS = "WAITING_FOR_SIGNALS"
    # An attempt exists and its task was sent; no worker has reported it started yet.
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    # The last attempt failed and a retry is due at a recorded time (back-off).
    WAITING_FOR_RETRY = "WAITING_FOR_RETRY"
    SUCCEEDED = "SUCCEEDED"
    # Failed, but the step's failure mode is IGNORE_FAILURE: successors still run.
    COMPLETED_WITH_ERROR = "COMPLETED_WITH_ERROR"
    SKIPPED = "SKIPPED"
    UNSATISFIED = "UNSATISFIED"
    # The three retryable failures: retries exhausted for that class; a restart may run it again.
    USER_FAILED = "USER_FAILED"
    PLATFORM_FAILED = "PLATFORM_FAILED"
    TIMEOUT_FAILED = "TIMEOUT_FAILED"
    # Failed and declared non-retryable.
    FATALLY_FAILED = "FATALLY_FAILED"
    INTERNALLY_FAILED = "INTERNALLY_FAILED"
    STOPPED = "STOPPED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self not in _ACTIVE_STEP and self is not StepStatus.NOT_CREATED

    @property
    def is_active(self) -> bool:
        """An attempt is in flight or due: the instance cannot finish yet."""
        return self in _ACTIVE_STEP

    @property
    def is_success(self) -> bool:
        """Successors may run after a step that ended in one of these."""
        return self in _SUCCESS_STEP

    @property
    def is_complete(self) -> bool:
        """Ended without a failure: succeeded in some way, or unsatisfied (a restart from the
        incomplete steps leaves these as they are)."""
        return self in _SUCCESS_STEP or self is StepStatus.UNSATISFIED

    @property
    def is_failure(self) -> bool:
        return self in _FAILURE_STEP

    @property
    def is_retryable(self) -> bool:
        return self in _RETRYABLE_STEP


_ACTIVE_STEP = frozenset(
    {
        StepStatus.PAUSED,
        StepStatus.WAITING_FOR_SIGNALS,
        StepStatus.STARTING,
        StepStatus.RUNNING,
        StepStatus.WAITING_FOR_RETRY,
    }
)


_SUCCESS_STEP = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.COMPLETED_WITH_ERROR, StepStatus.SKIPPED}
)


_RETRYABLE_STEP = frozenset(
    {StepStatus.USER_FAILED, StepStatus.PLATFORM_FAILED, StepStatus.TIMEOUT_FAILED}
)


_FAILURE_STEP = _RETRYABLE_STEP | {StepStatus.FATALLY_FAILED, StepStatus.INTERNALLY_FAILED}


class AttemptStatus(StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    USER_FAILED = "USER_FAILED"
    PLATFORM_FAILED = "PLATFORM_FAILED"
    TIMEOUT_FAILED = "TIMEOUT_FAILED"
    STOPPED = "STOPPED"

    @property
    def is_terminal(self) -> bool:
        return self not in (AttemptStatus.STARTING, AttemptStatus.RUNNING)


class FailureKind(StrEnum):
    """Who failed: the step's own code (USER), Baton or its workers (PLATFORM), or the clock."""

    USER = "USER"
    PLATFORM = "PLATFORM"
    TIMEOUT = "TIMEOUT"

    @property
    def step_status(self) -> StepStatus:
        return _FAILURE_STEP_STATUS[self]

    @property
    def attempt_status(self) -> AttemptStatus:
        return _FAILURE_ATTEMPT_STATUS[self]


_FAILURE_STEP_STATUS = {
    FailureKind.USER: StepStatus.USER_FAILED,
    FailureKind.PLATFORM: StepStatus.PLATFORM_FAILED,
    FailureKind.TIMEOUT: StepStatus.TIMEOUT_FAILED,
}


_FAILURE_ATTEMPT_STATUS = {
    FailureKind.USER: AttemptStatus.USER_FAILED,
    FailureKind.PLATFORM: AttemptStatus.PLATFORM_FAILED,
    FailureKind.TIMEOUT: AttemptStatus.TIMEOUT_FAILED,
}


class FailureMode(StrEnum):
    FAIL_IMMEDIATELY = "FAIL_IMMEDIATELY"
    FAIL_AFTER_RUNNING = "FAIL_AFTER_RUNNING"
    IGNORE_FAILURE = "IGNORE_FAILURE"


class RunStrategyRule(StrEnum):
    """How a workflow admits its instances (Maestro's run strategies)."""

    SEQUENTIAL = "SEQUENTIAL"  # one at a time, first in first out
    STRICT_SEQUENTIAL = "STRICT_SEQUENTIAL"  # ... and a failed run blocks the queue
    FIRST_ONLY = "FIRST_ONLY"  # a start while one runs is dropped
    LAST_ONLY = "LAST_ONLY"  # a start stops the running one, then runs
    SERIAL_LATEST_ONLY = "SERIAL_LATEST_ONLY"  # one at a time; a start replaces the queued one
    PARALLEL = "PARALLEL"  # up to `max` at once (0: every start waits)


class RestartMode(StrEnum):
    FROM_INCOMPLETE = "FROM_INCOMPLETE"
    FROM_BEGINNING = "FROM_BEGINNING"
    FROM_STEP = "FROM_STEP"  # the named step and everything downstream of it


# The action maps: which statuses each action applies to. The decider decides nothing for an
# action outside its map; the API answers it with a 409 naming the status.
INSTANCE_ACTIONS: dict[str, frozenset[InstanceStatus]] = {
    "stop": frozenset(s for s in InstanceStatus if not s.is_terminal),
    "kill": frozenset(s for s in InstanceStatus if not s.is_terminal),
    "restart": _TERMINAL_INSTANCE,
    "pause": frozenset({InstanceStatus.IN_PROGRESS}),
    "resume": frozenset({InstanceStatus.PAUSED}),
    # STRICT_SEQUENTIAL: a failed run that blocks its workflow's queue lets it move on.
    "unblock": frozenset({InstanceStatus.FAILED, InstanceStatus.TIMED_OUT}),
}


STEP_ACTIONS: dict[str, frozenset[StepStatus]] = {
    "skip": frozenset(
        s
        for s in StepStatus
        if s.is_active or s.is_failure or s in (StepStatus.NOT_CREATED, StepStatus.STOPPED)
    ),
    "stop": _ACTIVE_STEP,
    "restart": _FAILURE_STEP | {StepStatus.STOPPED, StepStatus.TIMED_OUT},
    # A breakpoint is set on a step that has not started (yet, or again after a restart).
    "pause": frozenset({StepStatus.NOT_CREATED}),
    "resume": frozenset({StepStatus.PAUSED, StepStatus.NOT_CREATED}),
    "bypass_signals": frozenset({StepStatus.WAITING_FOR_SIGNALS}),
}
