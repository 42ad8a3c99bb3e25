"""Commands: every input to the engine, imperative, keyed by the aggregate they address.

JSON-valued fields (definition, params, outputs) are canonical JSON text: the domain owns
their meaning, the wire only carries them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.statuses import FailureKind, RestartMode


@dataclass(frozen=True, slots=True)
class PushWorkflow:
    workflow_id: str
    definition: str
    activate: bool = True  # the new version becomes the active one


@dataclass(frozen=True, slots=True)
class ActivateWorkflow:
    """Make a version the active one (None: the latest)."""

    workflow_id: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class DeactivateWorkflow:
    """Leave the workflow without an active version (`default` then means the latest)."""

    workflow_id: str


@dataclass(frozen=True, slots=True)
class StartInstance:
    instance_id: str
    workflow_id: str
    version: int
    definition: str
    params: str
    initiator: str
    idempotency_key: str | None = None


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


InstanceCommand = (
    StartInstance
    | StopInstance
    | KillInstance
    | RestartInstance
    | PauseInstance
    | ResumeInstance
    | SkipStep
    | StopStep
    | RestartStep
    | PauseStep
    | ResumeStep
    | ReportAttemptStarted
    | ReportAttemptSucceeded
    | ReportAttemptFailed
    | ReportAttemptHeartbeat
    | FireTimers
    | ExpireHeartbeat
)
WorkflowCommand = PushWorkflow | ActivateWorkflow | DeactivateWorkflow
WORKFLOW_COMMANDS: tuple[type[Command], ...] = (PushWorkflow, ActivateWorkflow, DeactivateWorkflow)
Command = InstanceCommand | WorkflowCommand

# Commands that travel on the commands topic (the internal ones never leave the engine).
WIRE_COMMANDS: tuple[type[Command], ...] = (
    PushWorkflow,
    ActivateWorkflow,
    DeactivateWorkflow,
    StartInstance,
    StopInstance,
    KillInstance,
    RestartInstance,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    PauseInstance,
    ResumeInstance,
    SkipStep,
    StopStep,
    RestartStep,
    PauseStep,
    ResumeStep,
)


def command_key(cmd: Command) -> str:
    """The partition key: co-partitions a command with its aggregate's events."""
    if isinstance(cmd, PushWorkflow | ActivateWorkflow | DeactivateWorkflow):
        return cmd.workflow_id
    return cmd.instance_id


@dataclass(frozen=True, slots=True)
class CommandEnvelope:
    command_id: str
    issued_at: int  # UTC microseconds
    payload: Command
