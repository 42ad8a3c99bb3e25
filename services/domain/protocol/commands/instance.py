"""Commands an instance decides: its lifecycle, step actions, workers' reports, timers."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.kernel.statuses import FailureKind, InstanceStatus, RestartMode


@dataclass(frozen=True, slots=True)
class StartInstance:
    instance_id: str
    workflow_id: str
    version: int
    definition: str
    params: str
    initiator: str
    idempotency_key: str | None = None
    # False (what the API sends): the workflow's run strategy has yet to admit it, and the
    # instance asks it (QueueInstance). True: admitted, or outside any run strategy (a child
    # instance, a test harness): it starts at once.
    admitted: bool = True
    # A child instance: the subworkflow step attempt it reports its end to, and how deep it is.
    parent_instance_id: str | None = None
    parent_step_id: str | None = None
    parent_attempt: int = 0
    depth: int = 0
    loop: str | None = None  # a loop's iteration: its `iteration` value (JSON), params as given
    # Its workflow's breakpoints (set by API) when admitted or started as a child; for an
    # iteration, those of its parent's that name steps of the loop's body.
    breakpoints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportChildEnded:
    """A child instance of a subworkflow step ended (or could not start)."""

    instance_id: str  # the parent
    step_id: str
    attempt: int
    child_id: str
    status: InstanceStatus
    outputs: str = "{}"  # the child's step outputs by step id (JSON)
    reason: str = ""
    iteration: int | None = None  # the child is this iteration of a loop step


@dataclass(frozen=True, slots=True)
class StopInstance:
    instance_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class KillInstance:
    instance_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RestartInstance:
    instance_id: str
    mode: RestartMode = RestartMode.FROM_INCOMPLETE
    # The run the caller saw ended: a retried request must not restart the run it started.
    expected_run: int | None = None
    params: str = "{}"  # JSON: param overrides for the new run
    step_id: str | None = None  # FROM_STEP: the step to restart from


@dataclass(frozen=True, slots=True)
class PauseInstance:
    """No new step starts until ResumeInstance; running attempts go on to their end."""

    instance_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResumeInstance:
    instance_id: str


@dataclass(frozen=True, slots=True)
class SkipStep:
    """The step ends SKIPPED (its successors run as after a success); a running attempt is
    stopped."""

    instance_id: str
    step_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StopStep:
    """The step's active attempt is stopped and the step ends STOPPED (the run ends STOPPED
    unless the step is restarted)."""

    instance_id: str
    step_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PauseStep:
    """Set a breakpoint: the step pauses before it starts (PAUSED) until resumed."""

    instance_id: str
    step_id: str


@dataclass(frozen=True, slots=True)
class ResumeStep:
    """Start a step paused at its breakpoint (the breakpoint stays for later runs); on a
    step that has not reached it, clear the breakpoint."""

    instance_id: str
    step_id: str


@dataclass(frozen=True, slots=True)
class ApplyWorkflowBreakpoints:
    """The breakpoints set on the instance's workflow, as they are now (step ids): it pauses at
    these besides its own, and a step paused only by one no longer here starts. Passed on to
    its running iterations (those naming steps of their body)."""

    instance_id: str
    breakpoints: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RestartStep:
    """In a live run, a failed or stopped step runs again (a new attempt, fresh retries)."""

    instance_id: str
    step_id: str


@dataclass(frozen=True, slots=True)
class ReportAttemptStarted:
    instance_id: str
    step_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class ReportAttemptSucceeded:
    instance_id: str
    step_id: str
    attempt: int
    outputs: str = "{}"


@dataclass(frozen=True, slots=True)
class ReportAttemptFailed:
    instance_id: str
    step_id: str
    attempt: int
    kind: FailureKind
    message: str
    output_tail: str = ""


@dataclass(frozen=True, slots=True)
class ReportAttemptHeartbeat:
    instance_id: str
    step_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class BypassSignals:
    """Start a step waiting for signals without them (a step action)."""

    instance_id: str
    step_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DeliverSignal:
    """A signal matched dependency `index` of a waiting step (sent by the signal)."""

    instance_id: str
    step_id: str
    wait: int  # the wait it answers (StepWaitingForSignals' sequence number)
    index: int
    signal_name: str
    signal_seq: int
    params: str  # the signal's params (JSON)


@dataclass(frozen=True, slots=True)
class FireTimers:
    """Internal: the engine's clock reached a deadline recorded in this instance's state."""

    instance_id: str


@dataclass(frozen=True, slots=True)
class ExpireHeartbeat:
    """Internal: no heartbeat or report arrived for a running attempt within the limit."""

    instance_id: str
    step_id: str
    attempt: int
    silent_seconds: float
