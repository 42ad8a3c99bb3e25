"""Events: immutable facts, past tense. Each state transition is exactly one event.

Payloads carry what `evolve` needs and nothing it could derive; decisions (a retry time, the
status a failure ends in) are recorded, never recomputed on replay.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.protocol.events.instance import (
    BreakpointSet,
    InstanceFailed,
    InstancePaused,
    InstanceRestarted,
    InstanceResumed,
    InstanceStarted,
    InstanceStopped,
    InstanceSucceeded,
    InstanceTimedOut,
    LoopIterationEnded,
    LoopIterationsStarted,
    LoopStarted,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepAttemptSucceeded,
    StepEvaluationFailed,
    StepPaused,
    StepRestarted,
    StepResumed,
    StepSignalMatched,
    StepSignalsBypassed,
    StepSkipped,
    StepStopped,
    StepUnsatisfied,
    StepWaitingForSignals,
)
from services.domain.protocol.events.signal import (
    SignalAwaited,
    SignalReceived,
    SignalTriggersSet,
    SignalWaitCancelled,
)
from services.domain.protocol.events.workflow import (
    InstanceAdmitted,
    InstanceDequeued,
    InstanceQueued,
    InstanceReleased,
    TimeTriggerFired,
    TimeTriggerScheduled,
    WorkflowActivated,
    WorkflowBreakpointSet,
    WorkflowDeactivated,
    WorkflowUnblocked,
    WorkflowVersionCreated,
)
from services.domain.protocol.routing import signal_key

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


__all__ = [
    "BreakpointSet",
    "Event",
    "EventPayload",
    "InstanceAdmitted",
    "InstanceDequeued",
    "InstanceEvent",
    "InstanceFailed",
    "InstancePaused",
    "InstanceQueued",
    "InstanceReleased",
    "InstanceRestarted",
    "InstanceResumed",
    "InstanceStarted",
    "InstanceStopped",
    "InstanceSucceeded",
    "InstanceTimedOut",
    "LoopIterationEnded",
    "LoopIterationsStarted",
    "LoopStarted",
    "SignalAwaited",
    "SignalEvent",
    "SignalReceived",
    "SignalTriggersSet",
    "SignalWaitCancelled",
    "StepAttemptCreated",
    "StepAttemptFailed",
    "StepAttemptStarted",
    "StepAttemptSucceeded",
    "StepEvaluationFailed",
    "StepPaused",
    "StepRestarted",
    "StepResumed",
    "StepSignalMatched",
    "StepSignalsBypassed",
    "StepSkipped",
    "StepStopped",
    "StepUnsatisfied",
    "StepWaitingForSignals",
    "TimeTriggerFired",
    "TimeTriggerScheduled",
    "WorkflowActivated",
    "WorkflowBreakpointSet",
    "WorkflowDeactivated",
    "WorkflowEvent",
    "WorkflowUnblocked",
    "WorkflowVersionCreated",
]
