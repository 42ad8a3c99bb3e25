"""Commands: every input to the engine, imperative, keyed by the aggregate they address.

JSON-valued fields (definition, params, outputs) are canonical JSON text: the domain owns
their meaning, the wire only carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from typing_extensions import TypeIs

from services.domain.protocol.commands.instance import (
    ApplyWorkflowBreakpoints,
    BypassSignals,
    DeliverSignal,
    ExpireHeartbeat,
    FireTimers,
    KillInstance,
    PauseInstance,
    PauseStep,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    ReportChildEnded,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    ResumeStep,
    SkipStep,
    StartInstance,
    StopInstance,
    StopStep,
)
from services.domain.protocol.commands.signal import (
    AwaitSignal,
    CancelSignalWait,
    SendSignal,
    SetSignalTriggers,
)
from services.domain.protocol.commands.workflow import (
    ActivateWorkflow,
    DeactivateWorkflow,
    DequeueInstance,
    FireWorkflowTimers,
    NoteInstanceStatus,
    PushWorkflow,
    QueueInstance,
    SetWorkflowBreakpoint,
    StartChild,
    TriggerInstance,
    UnblockWorkflow,
)


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


@dataclass(frozen=True, slots=True)
class CommandEnvelope:
    command_id: str
    issued_at: int  # UTC microseconds
    payload: Command


__all__ = [
    "ActivateWorkflow",
    "ApplyWorkflowBreakpoints",
    "AwaitSignal",
    "BypassSignals",
    "CancelSignalWait",
    "Command",
    "CommandEnvelope",
    "DeactivateWorkflow",
    "DeliverSignal",
    "DequeueInstance",
    "ExpireHeartbeat",
    "FireTimers",
    "FireWorkflowTimers",
    "InstanceCommand",
    "KillInstance",
    "NoteInstanceStatus",
    "PauseInstance",
    "PauseStep",
    "PushWorkflow",
    "QueueInstance",
    "ReportAttemptFailed",
    "ReportAttemptHeartbeat",
    "ReportAttemptStarted",
    "ReportAttemptSucceeded",
    "ReportChildEnded",
    "RestartInstance",
    "RestartStep",
    "ResumeInstance",
    "ResumeStep",
    "SendSignal",
    "SetSignalTriggers",
    "SetWorkflowBreakpoint",
    "SignalCommand",
    "SkipStep",
    "StartChild",
    "StartInstance",
    "StopInstance",
    "StopStep",
    "TriggerInstance",
    "UnblockWorkflow",
    "WorkflowCommand",
    "is_signal_command",
    "is_workflow_command",
    "nul_field",
]
