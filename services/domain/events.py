"""Events: immutable facts, past tense. Each state transition is exactly one event.

Payloads carry what `evolve` needs and nothing it could derive; decisions (a retry time, the
status a failure ends in) are recorded, never recomputed on replay.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.commands import signal_key
from services.domain.signal_events import (
    SignalAwaited,
    SignalReceived,
    SignalTriggersSet,
    SignalWaitCancelled,
)
from services.domain.statuses import FailureKind, InstanceStatus, RestartMode, StepStatus


@dataclass(frozen=True, slots=True)
class WorkflowVersionCreated:
    version: int
    definition: str


@dataclass(frozen=True, slots=True)
class WorkflowActivated:
    version: int


@dataclass(frozen=True, slots=True)
class WorkflowDeactivated:
    version: int  # the version that was active


# --- the workflow's run strategy (workflow events: they name the instance in the payload) ---


@dataclass(frozen=True, slots=True)
class InstanceQueued:
    """A start waits for the run strategy to admit it: the instance is CREATED."""

    instance_id: str
    version: int
    definition: str
    params: str
    initiator: str
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class InstanceAdmitted:
    """The instance runs now (a start, a queued start reaching its turn, or a restart)."""

    instance_id: str


@dataclass(frozen=True, slots=True)
class InstanceDequeued:
    """A start that never ran: stopped while queued, superseded, or dropped (FIRST_ONLY)."""

    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class InstanceReleased:
    """An admitted instance ended: its place is free. `blocking`: it now blocks the queue
    (STRICT_SEQUENTIAL after a failure)."""

    instance_id: str
    status: InstanceStatus
    blocking: bool


@dataclass(frozen=True, slots=True)
class WorkflowUnblocked:
    instance_id: str  # the failed run that was blocking the queue


@dataclass(frozen=True, slots=True)
class WorkflowBreakpointSet:
    """A breakpoint on the workflow's steps `step_id` was set (`enabled`) or cleared."""

    step_id: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class InstanceStarted:
    version: int
    definition: str
    params: str
    initiator: str
    idempotency_key: str | None
    timeout_at: int
    # A child instance (events v4): the subworkflow step attempt it reports to, its depth.
    parent_instance_id: str | None = None
    parent_step_id: str | None = None
    parent_attempt: int = 0
    depth: int = 0
    # An iteration of a loop step: `{index, item}` (foreach) or `{index, outputs}` (while),
    # JSON; its expressions read it as `iteration`.
    loop: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceRestarted:
    run: int
    mode: RestartMode
    reset_steps: tuple[str, ...]
    timeout_at: int
    params: str | None = None  # the new run's params (JSON); None: the previous run's


@dataclass(frozen=True, slots=True)
class InstancePaused:
    run: int
    reason: str


@dataclass(frozen=True, slots=True)
class InstanceResumed:
    run: int


@dataclass(frozen=True, slots=True)
class InstanceSucceeded:
    run: int


@dataclass(frozen=True, slots=True)
class InstanceFailed:
    run: int
    reason: str
    failed_steps: tuple[str, ...]
    killed: bool


@dataclass(frozen=True, slots=True)
class InstanceStopped:
    run: int
    reason: str


@dataclass(frozen=True, slots=True)
class InstanceTimedOut:
    run: int


@dataclass(frozen=True, slots=True)
class StepAttemptCreated:
    step_id: str
    attempt: int
    run: int
    step_type: str
    queue: str | None  # None: the engine runs it (sleep)
    params: str


@dataclass(frozen=True, slots=True)
class StepAttemptStarted:
    step_id: str
    attempt: int
    worker_id: str
    timeout_at: int | None
    wake_at: int | None  # sleep steps: when the engine completes the attempt


@dataclass(frozen=True, slots=True)
class StepAttemptSucceeded:
    step_id: str
    attempt: int
    outputs: str


@dataclass(frozen=True, slots=True)
class StepAttemptFailed:
    step_id: str
    attempt: int
    kind: FailureKind
    message: str
    output_tail: str
    step_status: StepStatus  # WAITING_FOR_RETRY or the terminal status decided
    retry_at: int | None


@dataclass(frozen=True, slots=True)
class StepUnsatisfied:
    """No incoming edge of the step was taken (each one's condition was false, or its
    predecessor was unsatisfied): the step and its branch are skipped."""

    step_id: str
    run: int
    reason: str


@dataclass(frozen=True, slots=True)
class StepEvaluationFailed:
    """A param or an incoming condition of the step could not be evaluated."""

    step_id: str
    run: int
    message: str


@dataclass(frozen=True, slots=True)
class StepSkipped:
    """Skipped by request: successors run as after a success. `attempt` is the attempt that
    was in flight and is stopped, or 0."""

    step_id: str
    run: int
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class StepRestarted:
    """In a live run, a failed or stopped step is reset to run again, its retry budgets fresh."""

    step_id: str
    run: int


@dataclass(frozen=True, slots=True)
class BreakpointSet:
    """A breakpoint on the step was set (`enabled`) or cleared for this instance: its own (the
    definition's, or set on the instance), or (`workflow`, events v7) its workflow's."""

    step_id: str
    enabled: bool
    workflow: bool = False


@dataclass(frozen=True, slots=True)
class StepPaused:
    """The step reached its breakpoint: it waits, PAUSED, before its attempt."""

    step_id: str
    run: int


@dataclass(frozen=True, slots=True)
class StepResumed:
    """A step paused at its breakpoint was resumed: it starts now."""

    step_id: str
    run: int


@dataclass(frozen=True, slots=True)
class StepStopped:
    step_id: str
    attempt: int
    status: StepStatus  # STOPPED or TIMED_OUT
    reason: str


@dataclass(frozen=True, slots=True)
class LoopStarted:
    """A loop step's attempt began iterating: over `items` (JSON list; foreach), or while its
    condition holds (`items` None)."""

    step_id: str
    attempt: int
    items: str | None


@dataclass(frozen=True, slots=True)
class LoopIterationsStarted:
    """Iterations `first` .. `first + count - 1` of the loop's attempt were started (each a
    child instance); for a while loop, its condition held before each."""

    step_id: str
    attempt: int
    first: int
    count: int


@dataclass(frozen=True, slots=True)
class LoopIterationEnded:
    """An iteration's instance ended, with its outputs (its steps' outputs by step id, JSON)."""

    step_id: str
    attempt: int
    index: int
    status: InstanceStatus
    outputs: str
    reason: str


@dataclass(frozen=True, slots=True)
class StepWaitingForSignals:
    """The step waits before it starts for a signal per dependency; `dependencies` are their
    evaluated conditions (JSON list of {name, match}). The event's seq identifies the wait."""

    step_id: str
    run: int
    dependencies: str


@dataclass(frozen=True, slots=True)
class StepSignalMatched:
    """Signal `signal_name` number `signal_seq` met dependency `index` of the waiting step."""

    step_id: str
    index: int
    signal_name: str
    signal_seq: int
    params: str


@dataclass(frozen=True, slots=True)
class StepSignalsBypassed:
    """The step starts without the signals it waits for (a user's action)."""

    step_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TimeTriggerScheduled:
    """Time trigger `index` of the active version `version` fires next at `fire_at` (its cron
    time `scheduled_for`, plus its jitter)."""

    version: int
    index: int
    scheduled_for: int
    fire_at: int


@dataclass(frozen=True, slots=True)
class TimeTriggerFired:
    """Time trigger `index` fired for its time `scheduled_for`: it starts `instance_id`; it
    fires next at `next_fire_at` (times missed while no engine ran are skipped)."""

    version: int
    index: int
    scheduled_for: int
    instance_id: str
    next_scheduled_for: int
    next_fire_at: int


InstanceEvent = (
    InstanceStarted
    | InstanceRestarted
    | InstanceSucceeded
    | InstanceFailed
    | InstanceStopped
    | InstanceTimedOut
    | StepAttemptCreated
    | StepAttemptStarted
    | StepAttemptSucceeded
    | StepAttemptFailed
    | StepStopped
    | StepUnsatisfied
    | StepEvaluationFailed
    | InstancePaused
    | InstanceResumed
    | StepSkipped
    | StepRestarted
    | BreakpointSet
    | StepPaused
    | StepResumed
    | LoopStarted
    | LoopIterationsStarted
    | LoopIterationEnded
    | StepWaitingForSignals
    | StepSignalMatched
    | StepSignalsBypassed
)
WorkflowEvent = (
    WorkflowVersionCreated
    | WorkflowActivated
    | WorkflowDeactivated
    | InstanceQueued
    | InstanceAdmitted
    | InstanceDequeued
    | InstanceReleased
    | WorkflowUnblocked
    | TimeTriggerScheduled
    | TimeTriggerFired
    | WorkflowBreakpointSet
)
SignalEvent = SignalReceived | SignalAwaited | SignalWaitCancelled | SignalTriggersSet
EventPayload = InstanceEvent | WorkflowEvent | SignalEvent

# The workflow aggregate's events (the others are instance events).
WORKFLOW_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    WorkflowVersionCreated,
    WorkflowActivated,
    WorkflowDeactivated,
    InstanceQueued,
    InstanceAdmitted,
    InstanceDequeued,
    InstanceReleased,
    WorkflowUnblocked,
    TimeTriggerScheduled,
    TimeTriggerFired,
    WorkflowBreakpointSet,
)
SIGNAL_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    SignalReceived,
    SignalAwaited,
    SignalWaitCancelled,
    SignalTriggersSet,
)

EVENT_TYPES: tuple[type[EventPayload], ...] = (
    WorkflowVersionCreated,
    InstanceStarted,
    InstanceRestarted,
    InstanceSucceeded,
    InstanceFailed,
    InstanceStopped,
    InstanceTimedOut,
    StepAttemptCreated,
    StepAttemptStarted,
    StepAttemptSucceeded,
    StepAttemptFailed,
    StepStopped,
    StepUnsatisfied,
    StepEvaluationFailed,
    InstancePaused,
    InstanceResumed,
    StepSkipped,
    StepRestarted,
    BreakpointSet,
    StepPaused,
    StepResumed,
    WorkflowActivated,
    WorkflowDeactivated,
    InstanceQueued,
    InstanceAdmitted,
    InstanceDequeued,
    InstanceReleased,
    WorkflowUnblocked,
    LoopStarted,
    LoopIterationsStarted,
    LoopIterationEnded,
    StepWaitingForSignals,
    StepSignalMatched,
    StepSignalsBypassed,
    SignalReceived,
    SignalAwaited,
    SignalWaitCancelled,
    TimeTriggerScheduled,
    TimeTriggerFired,
    SignalTriggersSet,
    WorkflowBreakpointSet,
)


@dataclass(frozen=True, slots=True)
class Event:
    """The envelope. `event_id` is `<aggregate id>:<seq>`: unique and derived, never random."""

    event_id: str
    instance_id: str | None  # None for workflow-level and signal events
    workflow_id: str  # "" for signal events
    seq: int  # per aggregate, gapless from 1
    occurred_at: int  # UTC microseconds
    payload: EventPayload
    # When the command that caused it was issued, on the issuer's clock (a worker's report, an
    # API request); None for the engine's own decisions (timers). Metadata only: evolve never
    # reads it. It is what measures launch and start overhead from the worker's point of view.
    caused_at: int | None = None
    signal_name: str | None = None  # the signal of a signal event; None for the others

    @property
    def type(self) -> str:
        return type(self.payload).__name__

    @property
    def key(self) -> str:
        if self.instance_id is not None:
            return self.instance_id
        if self.signal_name is not None:
            return signal_key(self.signal_name)
        return self.workflow_id
