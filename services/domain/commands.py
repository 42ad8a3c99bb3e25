"""Commands: every input to the engine, imperative, keyed by the aggregate they address.

JSON-valued fields (definition, params, outputs) are canonical JSON text: the domain owns
their meaning, the wire only carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from typing_extensions import TypeIs

from services.domain.signal_commands import (
    AwaitSignal,
    CancelSignalWait,
    SendSignal,
    SetSignalTriggers,
)
from services.domain.statuses import FailureKind, InstanceStatus, RestartMode

# Instance ids are `<route>~<rest>`: every id with the same route lives on one partition, with
# the aggregate whose id is the route. A top-level instance is routed by its workflow id (its
# run strategy is decided right beside it, as Maestro groups flows by workflow); a child
# instance by its root's route. An id without the separator routes by itself.
ROUTE_SEPARATOR = "~"


class Rejected(ValueError):
    """The command can never apply; the reason is recorded with the dead-lettered command."""


def nul_field(command: Command, exempt: frozenset[str] = frozenset()) -> str | None:
    """The first field of `command` (a dataclass; a tuple field's items too) whose string
    holds a NUL character, which PostgreSQL cannot hold (see documents.NUL_MESSAGE); None if
    none does. Fields named in `exempt` are left to the rule that reads them. The JSON inside
    a string field (an escape `\\u0000`) is its decoder's to judge."""
    for f in fields(command):
        if f.name in exempt:
            continue
        value = getattr(command, f.name)
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, str) and "\x00" in v for v in items):
            return f.name
    return None


def route_key(key: str) -> str:
    """What decides the partition of an aggregate id (see ROUTE_SEPARATOR)."""
    return key.split(ROUTE_SEPARATOR, 1)[0]


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
class StartChild:
    """A subworkflow step asks the child's workflow to start a child instance: the workflow
    resolves the version and sends StartInstance, or tells the parent why it cannot."""

    workflow_id: str
    instance_id: str  # the child's id: `<parent id>~<step id>~<attempt>`, routed with it
    version: str  # "default", "active", "latest" or a number
    params: str
    initiator: str
    parent_instance_id: str
    parent_step_id: str
    parent_attempt: int
    depth: int
    sync: bool = True  # False: the child does not report its end to the parent


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
class QueueInstance:
    """Ask the workflow's run strategy to admit a new instance (sent by the instance)."""

    workflow_id: str
    instance_id: str
    version: int
    definition: str
    params: str
    initiator: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class NoteInstanceStatus:
    """An admitted instance ended, or a restart made it run again (sent by the instance)."""

    workflow_id: str
    instance_id: str
    status: InstanceStatus


@dataclass(frozen=True, slots=True)
class DequeueInstance:
    """Take a queued instance out of the queue (stopped before it ran); a running one stops."""

    workflow_id: str
    instance_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class UnblockWorkflow:
    """STRICT_SEQUENTIAL: let the queue move on past the failed run that blocks it (only if
    it is `instance_id`, when given)."""

    workflow_id: str
    instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetWorkflowBreakpoint:
    """Set (`enabled`) or clear a breakpoint on every step `step_id` (at any depth of loops) of
    the workflow's instances: those that start later and those running now."""

    workflow_id: str
    step_id: str
    enabled: bool = True


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
class FireWorkflowTimers:
    """Internal: the engine's clock reached a trigger time recorded in this workflow's state."""

    workflow_id: str


@dataclass(frozen=True, slots=True)
class TriggerInstance:
    """A signal trigger matched: start the workflow's active version (sent by the signal)."""

    workflow_id: str
    instance_id: str  # derived from the signal, so a replayed decision starts nothing more
    params: str  # the signal's params (JSON): those the workflow declares become start params
    initiator: str


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
    | ReportChildEnded
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
    | BypassSignals
    | DeliverSignal
    | ApplyWorkflowBreakpoints
)
WorkflowCommand = (
    PushWorkflow
    | ActivateWorkflow
    | DeactivateWorkflow
    | QueueInstance
    | NoteInstanceStatus
    | DequeueInstance
    | UnblockWorkflow
    | StartChild
    | FireWorkflowTimers
    | TriggerInstance
    | SetWorkflowBreakpoint
)
WORKFLOW_COMMANDS: tuple[type[Command], ...] = (
    PushWorkflow,
    ActivateWorkflow,
    DeactivateWorkflow,
    QueueInstance,
    NoteInstanceStatus,
    DequeueInstance,
    UnblockWorkflow,
    StartChild,
    FireWorkflowTimers,
    TriggerInstance,
    SetWorkflowBreakpoint,
)
SignalCommand = SendSignal | AwaitSignal | CancelSignalWait | SetSignalTriggers
SIGNAL_COMMANDS: tuple[type[Command], ...] = (
    SendSignal,
    AwaitSignal,
    CancelSignalWait,
    SetSignalTriggers,
)
Command = InstanceCommand | WorkflowCommand | SignalCommand

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
    QueueInstance,
    NoteInstanceStatus,
    DequeueInstance,
    UnblockWorkflow,
    StartChild,
    ReportChildEnded,
    BypassSignals,
    DeliverSignal,
    SendSignal,
    AwaitSignal,
    CancelSignalWait,
    TriggerInstance,
    SetSignalTriggers,
    SetWorkflowBreakpoint,
    ApplyWorkflowBreakpoints,
)


def is_workflow_command(cmd: Command) -> TypeIs[WorkflowCommand]:
    return isinstance(cmd, WORKFLOW_COMMANDS)


def is_signal_command(cmd: Command) -> TypeIs[SignalCommand]:
    return isinstance(cmd, SIGNAL_COMMANDS)


def signal_key(name: str) -> str:
    """A signal's aggregate id: its own key space (a workflow may share the name)."""
    return f"signal:{name}"


def command_key(cmd: Command) -> str:
    """The aggregate a command addresses (the record key; its route picks the partition)."""
    if is_workflow_command(cmd):
        return cmd.workflow_id
    if is_signal_command(cmd):
        return signal_key(cmd.signal_name)
    return cmd.instance_id


@dataclass(frozen=True, slots=True)
class CommandEnvelope:
    command_id: str
    issued_at: int  # UTC microseconds
    payload: Command
