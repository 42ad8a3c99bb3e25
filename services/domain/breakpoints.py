"""Breakpoints on an instance's steps: a step pauses (PAUSED) before it starts, until resumed.

They are set three ways: in the definition (`breakpoint: true`); on one instance's step
(`PauseStep`, by API); and on the workflow (`SetWorkflowBreakpoint`, by API), for all its
instances. The workflow aggregate keeps its own set (workflows.py): it gives it to each instance
it admits or starts as a child (`StartInstance.breakpoints`), and sends `PauseStep`, or
`ResumeStep` with `clear`, to the instances it has admitted that run now.

An instance keeps step ids of its own steps and of its loops' bodies, at any depth. An iteration
starts with those its body has; a breakpoint set or cleared on the instance reaches its running
iterations too.
"""

from __future__ import annotations

from collections.abc import Callable

from services.domain.commands import Command, PauseStep, Rejected, ResumeStep
from services.domain.definition import load_workflow
from services.domain.events import BreakpointSet, StepResumed
from services.domain.progress import Draft, advance, iteration_id, live
from services.domain.state import InstanceState
from services.domain.statuses import StepStatus


def start_breakpoints(d: Draft, given: tuple[str, ...]) -> None:
    """Just started: the breakpoints it was given, besides its definition's (ids it does not
    have, from another version of the workflow, are left out)."""
    s = d.s
    for step_id in sorted(set(given) & s.workflow.nested_step_ids - s.breakpoints):
        d.emit(BreakpointSet(step_id, enabled=True))


def iteration_breakpoints(s: InstanceState, loop_step_id: str) -> tuple[str, ...]:
    """What an iteration of the loop starts with: the breakpoints on steps of its body."""
    body = load_workflow(s.workflow.bodies[loop_step_id]).nested_step_ids
    return tuple(sorted(s.breakpoints & body))


def _known(d: Draft, step_id: str) -> bool:
    if step_id in d.s.steps or step_id in d.s.workflow.nested_step_ids:
        return True
    raise Rejected(f"the workflow has no step {step_id!r}")


def pause_step(d: Draft, c: PauseStep) -> None:
    if not live(d) or not _known(d, c.step_id) or c.step_id in d.s.breakpoints:
        return
    d.emit(BreakpointSet(c.step_id, enabled=True))
    _to_iterations(d, c.step_id, lambda iid: PauseStep(iid, c.step_id))


def resume_step(d: Draft, c: ResumeStep) -> None:
    if not live(d) or not _known(d, c.step_id):
        return
    st = d.s.steps.get(c.step_id)
    if st is not None and st.status is StepStatus.PAUSED:
        if c.clear:
            d.emit(BreakpointSet(c.step_id, enabled=False))
        # Released for this run; unless cleared, the breakpoint stays (a restart pauses again).
        d.emit(StepResumed(c.step_id, d.s.run))
        advance(d)
    elif c.step_id in d.s.breakpoints:
        d.emit(BreakpointSet(c.step_id, enabled=False))  # cleared before it is reached
    if c.clear:
        _to_iterations(d, c.step_id, lambda iid: ResumeStep(iid, c.step_id, clear=True))


def _to_iterations(d: Draft, step_id: str, command: Callable[[str], Command]) -> None:
    """Send `command` to the running iterations of each running loop whose body has the step."""
    s = d.s
    for loop_id in s.workflow.dag.loop_steps:
        st = s.steps[loop_id]
        if st.status is not StepStatus.RUNNING or st.loop is None or not st.loop.running:
            continue
        if step_id not in load_workflow(s.workflow.bodies[loop_id]).nested_step_ids:
            continue
        for index in sorted(st.loop.running):
            d.send(command(iteration_id(s.instance_id, loop_id, st.attempt, index)))
