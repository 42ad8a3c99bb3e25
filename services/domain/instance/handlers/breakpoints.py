"""The workflow's breakpoints, as they change while the instance runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.instance.draft import Draft, live
from services.domain.instance.scheduler import advance
from services.domain.kernel.statuses import StepStatus
from services.domain.protocol.commands import ApplyWorkflowBreakpoints
from services.domain.protocol.events import BreakpointSet, StepResumed
from services.domain.protocol.routing import iteration_id


def apply_workflow_breakpoints(d: Draft, c: ApplyWorkflowBreakpoints) -> None:
    if not live(d):
        return  # a finished instance gets them again if it is restarted
    before = d.s.workflow_breakpoints
    wanted = frozenset(c.breakpoints) & d.s.workflow.nested_step_ids
    if wanted == before:
        return
    for step_id in sorted(wanted - before):
        d.emit(BreakpointSet(step_id, enabled=True, workflow=True))
    gone = sorted(before - wanted)
    for step_id in gone:
        d.emit(BreakpointSet(step_id, enabled=False, workflow=True))
    released = False
    for step_id in gone:
        st = d.s.steps.get(step_id)
        if st is not None and st.status is StepStatus.PAUSED and not d.s.pauses_at(step_id):
            d.emit(StepResumed(step_id, d.s.run))
            released = True
    _to_iterations(d, before, wanted)
    if released:
        advance(d)


def _to_iterations(d: Draft, before: frozenset[str], wanted: frozenset[str]) -> None:
    """Each running loop whose body's share changed tells its running iterations."""
    s = d.s
    for loop_id in s.workflow.dag.loop_steps:
        st = s.steps[loop_id]
        if st.status is not StepStatus.RUNNING or st.loop is None or not st.loop.running:
            continue
        body = s.workflow.body_step_ids[loop_id]
        if before & body == wanted & body:
            continue
        share = tuple(sorted(wanted & body))
        for index in sorted(st.loop.running):
            iid = iteration_id(s.instance_id, loop_id, st.attempt, index)
            d.send(ApplyWorkflowBreakpoints(iid, share))


RULES: dict[type, Callable[[Draft, Any], None]] = {
    ApplyWorkflowBreakpoints: apply_workflow_breakpoints,
}
