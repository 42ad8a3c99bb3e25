"""Events of an instance: its runs, its steps' attempts, loops, signal waits, breakpoints."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.kernel.statuses import FailureKind, InstanceStatus, RestartMode, StepStatus


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
    # On the log (events v8), `definition` is empty and this names it: the SHA-256 of its
    # text, stored once in baton.definitions (services/adapters/definitions.py). Readers put
    # the text back before folding; the domain always sees it.
    definition_hash: str = ""


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
