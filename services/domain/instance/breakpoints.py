"""Which breakpoints an instance, or a loop's iteration, starts with."""

from __future__ import annotations

from services.domain.instance.draft import Draft
from services.domain.instance.state import InstanceState
from services.domain.protocol.events import BreakpointSet


def start_breakpoints(d: Draft, given: tuple[str, ...]) -> None:
    """Just started: its workflow's breakpoints (ids it does not have, of another version of
    the workflow, are left out)."""
    for step_id in sorted(set(given) & d.s.workflow.nested_step_ids):
        d.emit(BreakpointSet(step_id, enabled=True, workflow=True))


def iteration_breakpoints(s: InstanceState, loop_step_id: str) -> tuple[str, ...]:
    """What an iteration of the loop starts with: its workflow's breakpoints on steps of its
    body."""
    return tuple(sorted(s.workflow_breakpoints & s.workflow.body_step_ids[loop_step_id]))
