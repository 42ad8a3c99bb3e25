"""Events of the workflow aggregate (those of its run strategy name the instance in the payload)."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.kernel.statuses import InstanceStatus


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


@dataclass(frozen=True, slots=True)
class InstanceQueued:
    """A start waits for the run strategy to admit it: the instance is CREATED."""

    instance_id: str
    version: int
    definition: str
    params: str
    initiator: str
    idempotency_key: str | None
    # On the log: `definition` empty and named by this hash, as in InstanceStarted.
    definition_hash: str = ""


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
