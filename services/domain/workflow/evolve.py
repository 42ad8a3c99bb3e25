"""evolve for the workflow aggregate: one case per event, no rule."""

from __future__ import annotations

from dataclasses import replace

import immutables

from services.domain.kernel.errors import CorruptLog
from services.domain.language.workflow import load_workflow, shared_definition
from services.domain.protocol.events import (
    Event,
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
from services.domain.workflow.state import WorkflowState


def evolve_workflow(state: WorkflowState | None, event: Event) -> WorkflowState:
    p = event.payload
    if state is not None and event.seq != state.seq + 1:
        raise CorruptLog(f"{event.event_id}: seq {event.seq} after {state.seq}")
    if isinstance(p, WorkflowVersionCreated):
        strategy = load_workflow(p.definition).run_strategy
        if state is None:
            return WorkflowState(
                event.workflow_id,
                p.version,
                event.seq,
                run_strategy=strategy,
                definitions={p.version: shared_definition(p.definition)},
            )
        definitions = {**state.definitions, p.version: shared_definition(p.definition)}
        return replace(
            state,
            latest_version=p.version,
            seq=event.seq,
            run_strategy=strategy,
            definitions=definitions,
        )
    if isinstance(p, WorkflowActivated | WorkflowDeactivated) and state is None:
        raise CorruptLog(f"{event.event_id}: {event.type} before any version")
    # Instances of a workflow never pushed (an inline definition) are admitted all the same.
    s = replace(state or WorkflowState(event.workflow_id, 0, 0), seq=event.seq)
    if isinstance(p, WorkflowActivated):
        return replace(s, active_version=p.version, cron={})  # the new version schedules its own
    if isinstance(p, WorkflowDeactivated):
        return replace(s, active_version=None, cron={})
    if isinstance(p, TimeTriggerScheduled):
        return replace(s, cron={**s.cron, p.index: (p.scheduled_for, p.fire_at)})
    if isinstance(p, TimeTriggerFired):
        return replace(s, cron={**s.cron, p.index: (p.next_scheduled_for, p.next_fire_at)})
    if isinstance(p, InstanceQueued):
        queued = replace(p, definition=shared_definition(p.definition))
        return replace(s, queue=s.queue.append(p.instance_id, queued))
    if isinstance(p, InstanceAdmitted):
        return replace(
            s,
            running=s.running.set(p.instance_id, None),
            queue=s.queue.remove(p.instance_id),
            blocked_by=None if s.blocked_by == p.instance_id else s.blocked_by,
        )
    if isinstance(p, InstanceDequeued):
        return replace(s, queue=s.queue.remove(p.instance_id))
    if isinstance(p, InstanceReleased):
        return replace(
            s,
            running=_without_key(s.running, p.instance_id),
            blocked_by=p.instance_id if p.blocking else s.blocked_by,
        )
    if isinstance(p, WorkflowUnblocked):
        return replace(s, blocked_by=None)
    if isinstance(p, WorkflowBreakpointSet):
        points = s.breakpoints | {p.step_id} if p.enabled else s.breakpoints - {p.step_id}
        return replace(s, breakpoints=points)
    raise CorruptLog(f"{event.type} is not a workflow event")


def _without_key(running: immutables.Map[str, None], key: str) -> immutables.Map[str, None]:
    return running.delete(key) if key in running else running
