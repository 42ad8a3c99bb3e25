"""Commands the workflow aggregate decides: versions, activation, admission, triggers."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.kernel.statuses import InstanceStatus


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
