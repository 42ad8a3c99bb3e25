"""An instance's side of the breakpoints set on its workflow (workflows.py keeps the set).

An instance pauses at its own breakpoints (its definition's, and those set on it by
`PauseStep`) and at its workflow's, kept apart so that clearing one never clears the other.
The workflow's arrive with the start (`StartInstance.breakpoints`) and, when they change or a
finished instance runs again, as the whole set (`ApplyWorkflowBreakpoints`): the instance
records the difference (`BreakpointSet` with `workflow`), starts the steps paused only by one
that went, and passes the set on to its running iterations. It keeps the ids of its own steps
and of its loops' bodies, at any depth; an iteration starts with those of its body.
"""

from __future__ import annotations

from services.domain.commands import ApplyWorkflowBreakpoints
from services.domain.events import BreakpointSet, StepResumed
from services.domain.progress import Draft, advance, iteration_id, live
from services.domain.state import InstanceState
from services.domain.statuses import StepStatus


def start_breakpoints(d: Draft, given: tuple[str, ...]) -> None:
    """Just started: its workflow's breakpoints (ids it does not have, of another version of
    the workflow, are left out)."""
    for step_id in sorted(set(given) & d.s.workflow.nested_step_ids):
        d.emit(BreakpointSet(step_id, enabled=True, workflow=True))


def iteration_breakpoints(s: InstanceState, loop_step_id: str) -> tuple[str, ...]:
    """What an iteration of the loop starts with: its workflow's breakpoints on steps of its
    body."""
    return tuple(sorted(s.workflow_breakpoints & s.workflow.body_step_ids[loop_step_id]))


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
