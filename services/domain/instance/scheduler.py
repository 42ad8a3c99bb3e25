"""How a run moves forward: `advance` decides every step that can run, as far as pause and the step concurrency allow, and ends the run when nothing can."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.domain.instance.attempts import stop_active
from services.domain.instance.draft import Draft, live
from services.domain.instance.kinds.loops import run_loop
from services.domain.instance.kinds.signal_waits import wait_for_signals
from services.domain.instance.launch import create_attempt
from services.domain.instance.state import InstanceState, StepState
from services.domain.instance.views import run_builtins, steps_view
from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import FailureMode, InstanceStatus, StepStatus
from services.domain.language.dag import Dag
from services.domain.language.evaluation import context, evaluate_condition
from services.domain.language.steps import (
    ForeachStep,
    WhileStep,
)
from services.domain.protocol.events import (
    InstanceFailed,
    InstanceStopped,
    InstanceSucceeded,
    StepEvaluationFailed,
    StepPaused,
    StepUnsatisfied,
)


def _incoming(d: Draft, step_id: str) -> bool | None:
    """Whether any incoming edge of a step whose predecessors are all complete is taken.
    Decides StepUnsatisfied (False) or StepEvaluationFailed (None) itself."""
    dag = d.s.workflow.dag
    taken = False
    not_taken: list[str] = []
    ctx: dict[str, Any] | None = None
    for pred in dag.predecessors[step_id]:
        if d.s.steps[pred].status is StepStatus.UNSATISFIED:
            not_taken.append(f"{pred} was unsatisfied")
            continue
        condition = dag.conditions.get((pred, step_id))
        if condition is None:
            taken = True
            continue
        if ctx is None:
            ctx = context(json.loads(d.s.params), run_builtins(d.s), steps_view(d.s, step_id))
        try:
            holds = evaluate_condition(condition, ctx)
        except ExpressionError as err:
            d.emit(
                StepEvaluationFailed(step_id, d.s.run, f"condition of {pred} -> {step_id}: {err}")
            )
            return None
        if holds:
            taken = True
        else:
            not_taken.append(f"{pred} -> {step_id}: {condition} is false")
    if not taken:
        d.emit(StepUnsatisfied(step_id, d.s.run, "; ".join(not_taken)))
    return taken


def _failed_fast(d: Draft) -> bool:
    """A step failed that ends the run at once (FAIL_IMMEDIATELY, or failed to evaluate):
    stop the rest and fail the instance."""
    dag = d.s.workflow.dag
    steps = d.s.steps
    fatal = [
        sid
        for sid in dag.order
        if steps[sid].status.is_failure
        and (
            dag.steps[sid].failure_mode is FailureMode.FAIL_IMMEDIATELY
            or steps[sid].status is StepStatus.INTERNALLY_FAILED
        )
    ]
    if not fatal:
        return False
    failed = tuple(sid for sid in dag.order if steps[sid].status.is_failure)
    why = (
        "FAIL_IMMEDIATELY"
        if steps[fatal[0]].status is not StepStatus.INTERNALLY_FAILED
        else ("INTERNALLY_FAILED")
    )
    stop_active(d, StepStatus.STOPPED, f"step {fatal[0]} failed ({why})")
    d.emit(InstanceFailed(d.s.run, f"step {fatal[0]} failed", failed, killed=False))
    return True


def _slots(s: InstanceState) -> int | None:
    """How many more attempts may start under the workflow's step concurrency (None: no
    limit). Attempts in flight (a task sent, a worker or the engine running it) hold one."""
    limit = s.workflow.step_concurrency
    if limit is None:
        return None
    busy = sum(
        1 for st in s.steps.values() if st.status in (StepStatus.STARTING, StepStatus.RUNNING)
    )
    return max(0, limit - busy)


def _ready(dag: Dag, steps: Mapping[str, StepState], sid: str) -> bool:
    """Not created yet, and every predecessor complete."""
    return steps[sid].status is StepStatus.NOT_CREATED and all(
        steps[p].status.is_complete for p in dag.predecessors[sid]
    )


def _run_loops(d: Draft) -> None:
    """Running loops start the iterations they now have room for (an iteration ended, the
    instance resumed), or end when nothing runs and nothing more will."""
    dag = d.s.workflow.dag

    for sid in dag.loop_steps:
        step = dag.steps[sid]
        assert isinstance(step, ForeachStep | WhileStep)
        run_loop(d, step)


def advance(d: Draft) -> None:
    """Decide every step whose predecessors are all complete (run it, or find it unsatisfied),
    and every retry that is due, in topological order, as far as pause and the step
    concurrency allow; end the run when nothing can run any more."""
    if not live(d) or _failed_fast(d):
        return
    dag = d.s.workflow.dag
    if dag.loop_steps:
        # First the loops (one may end, and its successors are decided below).
        _run_loops(d)
        if _failed_fast(d):
            return
    if d.s.status is InstanceStatus.IN_PROGRESS:
        for sid in dag.topo:
            st = d.s.steps[sid]
            due_retry = (
                st.status is StepStatus.WAITING_FOR_RETRY
                and st.retry_at is not None
                and st.retry_at <= d.now
            )
            if not due_retry and not _ready(dag, d.s.steps, sid):
                continue
            if not due_retry and dag.predecessors[sid]:
                taken = _incoming(d, sid)
                if taken is None:
                    break  # an evaluation failed: the run ends (below), nothing more starts
                if not taken:
                    continue
            if not due_retry and not st.released and d.s.pauses_at(sid):
                d.emit(StepPaused(sid, d.s.run))
                continue
            if not due_retry and dag.steps[sid].signal_dependencies and not st.signals_met:
                wait_for_signals(d, sid)
                if d.s.steps[sid].status is StepStatus.INTERNALLY_FAILED:
                    break
                continue
            slots = _slots(d.s)
            if slots == 0:
                continue  # waits for a running attempt to end (the next report decides it)
            create_attempt(d, sid)
            if d.s.steps[sid].status is StepStatus.INTERNALLY_FAILED:
                break
        if _failed_fast(d):
            return
    steps = d.s.steps
    if any(st.status.is_active for st in steps.values()):
        return
    if d.s.status is InstanceStatus.PAUSED and any(_ready(dag, steps, sid) for sid in dag.order):
        return  # waits for resume
    failed = tuple(sid for sid in dag.order if steps[sid].status.is_failure)
    stopped = tuple(sid for sid in dag.order if steps[sid].status is StepStatus.STOPPED)
    if failed:
        d.emit(InstanceFailed(d.s.run, "step(s) failed: " + ", ".join(failed), failed, False))
    elif stopped:
        d.emit(InstanceStopped(d.s.run, "step(s) stopped: " + ", ".join(stopped)))
    else:
        d.emit(InstanceSucceeded(d.s.run))


def next_deadline(state: InstanceState) -> int | None:
    """The earliest recorded time at which `FireTimers` has something to do."""
    if not state.status.is_live:
        return None
    due = [state.timeout_at]
    # A retry waits while the run is paused or every slot is taken: resuming, or an attempt
    # ending, decides it then.
    retries = state.status is InstanceStatus.IN_PROGRESS and _slots(state) != 0
    for st in state.steps.values():
        if st.status is StepStatus.WAITING_FOR_RETRY and st.retry_at is not None:
            if retries:
                due.append(st.retry_at)
        elif st.status.is_active:
            due.extend(t for t in (st.wake_at, st.timeout_at) if t is not None)
    return min(due)
