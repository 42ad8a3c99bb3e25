"""Actions on one step of a live run: skip, stop, restart, pause, resume, bypass its signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.instance.draft import Draft, live
from services.domain.instance.kinds.signal_waits import bypass_signals
from services.domain.instance.scheduler import advance
from services.domain.instance.state import StepState
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import (
    STEP_ACTIONS,
    StepStatus,
)
from services.domain.protocol.commands import (
    BypassSignals,
    PauseStep,
    RestartStep,
    ResumeStep,
    SkipStep,
    StopStep,
)
from services.domain.protocol.events import (
    BreakpointSet,
    StepRestarted,
    StepResumed,
    StepSkipped,
    StepStopped,
)


def _step(d: Draft, step_id: str) -> StepState | None:
    """The step of a live run, or None; an unknown step id can never apply."""
    if not live(d):
        return None
    st = d.s.steps.get(step_id)
    if st is None:
        raise Rejected(f"the workflow has no step {step_id!r}")
    return st


def _skip_step(d: Draft, c: SkipStep) -> None:
    st = _step(d, c.step_id)
    if st is None or st.status not in STEP_ACTIONS["skip"]:
        return
    attempt = st.attempt if st.status in (StepStatus.STARTING, StepStatus.RUNNING) else 0
    d.emit(StepSkipped(c.step_id, d.s.run, attempt, c.reason or "skipped by request"))
    advance(d)


def _stop_step(d: Draft, c: StopStep) -> None:
    st = _step(d, c.step_id)
    if st is None or st.status not in STEP_ACTIONS["stop"]:
        return
    d.emit(StepStopped(c.step_id, st.attempt, StepStatus.STOPPED, c.reason or "stopped by request"))
    advance(d)


def _restart_step(d: Draft, c: RestartStep) -> None:
    st = _step(d, c.step_id)
    if st is None or st.status not in STEP_ACTIONS["restart"]:
        return
    d.emit(StepRestarted(c.step_id, d.s.run))
    advance(d)


def _pause_step(d: Draft, c: PauseStep) -> None:
    st = _step(d, c.step_id)
    if st is None or c.step_id in d.s.breakpoints:
        return
    d.emit(BreakpointSet(c.step_id, enabled=True))


def _resume_step(d: Draft, c: ResumeStep) -> None:
    st = _step(d, c.step_id)
    if st is None:
        return
    if st.status is StepStatus.PAUSED:
        # Released for this run; the breakpoint stays (a restart pauses there again).
        d.emit(StepResumed(c.step_id, d.s.run))
        advance(d)
    elif c.step_id in d.s.breakpoints:
        # Cleared before it is reached (its own: a workflow's breakpoint stays on the workflow).
        d.emit(BreakpointSet(c.step_id, enabled=False))


def _bypass_signals(d: Draft, c: BypassSignals) -> None:
    _step(d, c.step_id)  # an unknown step can never apply
    if bypass_signals(d, c):
        advance(d)


RULES: dict[type, Callable[[Draft, Any], None]] = {
    SkipStep: _skip_step,
    StopStep: _stop_step,
    RestartStep: _restart_step,
    PauseStep: _pause_step,
    ResumeStep: _resume_step,
    BypassSignals: _bypass_signals,
}
