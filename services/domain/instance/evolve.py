"""evolve(state, event) -> state: the pure, total fold. It never rejects an event."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from services.domain.instance.state import InstanceState, LoopState, StepState
from services.domain.kernel.errors import CorruptLog
from services.domain.kernel.statuses import FailureKind, InstanceStatus, StepStatus
from services.domain.language.workflow import load_workflow, shared_definition
from services.domain.protocol.events import (
    BreakpointSet,
    Event,
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


def _started(s: InstanceState | None, e: Event, p: InstanceStarted) -> InstanceState:
    assert e.instance_id is not None
    wf = load_workflow(p.definition)
    wf_steps = wf.dag.order
    return InstanceState(
        instance_id=e.instance_id,
        workflow_id=e.workflow_id,
        version=p.version,
        definition=shared_definition(p.definition),
        params=p.params,
        run=1,
        status=InstanceStatus.IN_PROGRESS,
        timeout_at=p.timeout_at,
        seq=e.seq,
        steps=dict.fromkeys(wf_steps, StepState()),
        initiator=p.initiator,
        started_at=e.occurred_at,
        run_started_at=e.occurred_at,
        breakpoints=frozenset(s.id for s in wf.steps if s.breakpoint),
        parent_instance_id=p.parent_instance_id,
        parent_step_id=p.parent_step_id,
        parent_attempt=p.parent_attempt,
        depth=p.depth,
        loop=p.loop,
    )


def _restarted(s: InstanceState, e: Event, p: InstanceRestarted) -> InstanceState:
    steps = dict(s.steps)
    for sid in p.reset_steps:
        steps[sid] = StepState(attempt=steps[sid].attempt)
    return replace(
        s,
        run=p.run,
        status=InstanceStatus.IN_PROGRESS,
        timeout_at=p.timeout_at,
        steps=steps,
        failed_steps=(),
        seq=e.seq,
        params=s.params if p.params is None else p.params,
        run_started_at=e.occurred_at,
    )


def _ended(status: InstanceStatus) -> Callable[[InstanceState, Event, Any], InstanceState]:
    def apply(s: InstanceState, e: Event, p: Any) -> InstanceState:
        failed = p.failed_steps if isinstance(p, InstanceFailed) else s.failed_steps
        return replace(s, status=status, seq=e.seq, failed_steps=failed)

    return apply


def _set_step(s: InstanceState, e: Event, step_id: str, step: StepState) -> InstanceState:
    steps = dict(s.steps)
    steps[step_id] = step
    return replace(s, steps=steps, seq=e.seq)


def _attempt_created(s: InstanceState, e: Event, p: StepAttemptCreated) -> InstanceState:
    old = s.steps[p.step_id]
    return _set_step(
        s,
        e,
        p.step_id,
        replace(old, status=StepStatus.STARTING, attempt=p.attempt, retry_at=None, loop=None),
    )


def _attempt_started(s: InstanceState, e: Event, p: StepAttemptStarted) -> InstanceState:
    old = s.steps[p.step_id]
    new = replace(old, status=StepStatus.RUNNING, timeout_at=p.timeout_at, wake_at=p.wake_at)
    return _set_step(s, e, p.step_id, new)


def _attempt_succeeded(s: InstanceState, e: Event, p: StepAttemptSucceeded) -> InstanceState:
    old = s.steps[p.step_id]
    new = replace(
        old, status=StepStatus.SUCCEEDED, timeout_at=None, wake_at=None, outputs=p.outputs
    )
    return _set_step(s, e, p.step_id, new)


def _attempt_failed(s: InstanceState, e: Event, p: StepAttemptFailed) -> InstanceState:
    old = s.steps[p.step_id]
    new = replace(
        old,
        status=p.step_status,
        retry_at=p.retry_at,
        timeout_at=None,
        wake_at=None,
        user_failures=old.user_failures + (p.kind is FailureKind.USER),
        platform_failures=old.platform_failures + (p.kind is FailureKind.PLATFORM),
        timeout_failures=old.timeout_failures + (p.kind is FailureKind.TIMEOUT),
    )
    return _set_step(s, e, p.step_id, new)


def _step_stopped(s: InstanceState, e: Event, p: StepStopped) -> InstanceState:
    old = s.steps[p.step_id]
    new = replace(old, status=p.status, retry_at=None, timeout_at=None, wake_at=None)
    return _set_step(s, e, p.step_id, new)


def _step_unsatisfied(s: InstanceState, e: Event, p: StepUnsatisfied) -> InstanceState:
    return _set_step(s, e, p.step_id, replace(s.steps[p.step_id], status=StepStatus.UNSATISFIED))


def _step_evaluation_failed(s: InstanceState, e: Event, p: StepEvaluationFailed) -> InstanceState:
    new = replace(s.steps[p.step_id], status=StepStatus.INTERNALLY_FAILED)
    return _set_step(s, e, p.step_id, new)


def _paused(s: InstanceState, e: Event, p: InstancePaused) -> InstanceState:
    return replace(s, status=InstanceStatus.PAUSED, seq=e.seq)


def _resumed(s: InstanceState, e: Event, p: InstanceResumed) -> InstanceState:
    return replace(s, status=InstanceStatus.IN_PROGRESS, seq=e.seq)


def _step_skipped(s: InstanceState, e: Event, p: StepSkipped) -> InstanceState:
    old = s.steps[p.step_id]
    new = replace(
        old, status=StepStatus.SKIPPED, retry_at=None, timeout_at=None, wake_at=None, outputs=None
    )
    return _set_step(s, e, p.step_id, new)


def _step_restarted(s: InstanceState, e: Event, p: StepRestarted) -> InstanceState:
    # Attempt numbers count on; the retry budgets start again.
    return _set_step(s, e, p.step_id, StepState(attempt=s.steps[p.step_id].attempt))


def _breakpoint_set(s: InstanceState, e: Event, p: BreakpointSet) -> InstanceState:
    old = s.workflow_breakpoints if p.workflow else s.breakpoints
    points = old | {p.step_id} if p.enabled else old - {p.step_id}
    if p.workflow:
        return replace(s, workflow_breakpoints=points, seq=e.seq)
    return replace(s, breakpoints=points, seq=e.seq)


def _step_paused(s: InstanceState, e: Event, p: StepPaused) -> InstanceState:
    return _set_step(s, e, p.step_id, replace(s.steps[p.step_id], status=StepStatus.PAUSED))


def _step_resumed(s: InstanceState, e: Event, p: StepResumed) -> InstanceState:
    new = replace(s.steps[p.step_id], status=StepStatus.NOT_CREATED, released=True)
    return _set_step(s, e, p.step_id, new)


def _waiting_for_signals(s: InstanceState, e: Event, p: StepWaitingForSignals) -> InstanceState:
    new = replace(
        s.steps[p.step_id],
        status=StepStatus.WAITING_FOR_SIGNALS,
        signal_wait=e.seq,
        signals_matched=frozenset(),
    )
    return _set_step(s, e, p.step_id, new)


def _signal_matched(s: InstanceState, e: Event, p: StepSignalMatched) -> InstanceState:
    old = s.steps[p.step_id]
    matched = old.signals_matched | {p.index}
    needed = len(s.workflow.dag.steps[p.step_id].signal_dependencies)
    if len(matched) < needed:
        return _set_step(s, e, p.step_id, replace(old, signals_matched=matched))
    new = replace(
        old,
        status=StepStatus.NOT_CREATED,
        signals_matched=matched,
        signal_wait=None,
        signals_met=True,
    )
    return _set_step(s, e, p.step_id, new)


def _signals_bypassed(s: InstanceState, e: Event, p: StepSignalsBypassed) -> InstanceState:
    old = s.steps[p.step_id]
    new = replace(old, status=StepStatus.NOT_CREATED, signal_wait=None, signals_met=True)
    return _set_step(s, e, p.step_id, new)


# The loop's aggregated result keeps the iterations' outputs up to this many bytes.
MAX_LOOP_RESULTS_BYTES = 200 * 1024


def _loop_started(s: InstanceState, e: Event, p: LoopStarted) -> InstanceState:
    items = None if p.items is None else tuple(json.loads(p.items))
    return _set_step(s, e, p.step_id, replace(s.steps[p.step_id], loop=LoopState(items)))


def _iterations_started(s: InstanceState, e: Event, p: LoopIterationsStarted) -> InstanceState:
    old = s.steps[p.step_id]
    loop = old.loop or LoopState(None)
    new = replace(
        loop,
        started=p.first + p.count,
        running=loop.running | frozenset(range(p.first, p.first + p.count)),
    )
    return _set_step(s, e, p.step_id, replace(old, loop=new))


def _iteration_ended(s: InstanceState, e: Event, p: LoopIterationEnded) -> InstanceState:
    old = s.steps[p.step_id]
    loop = old.loop or LoopState(None)
    counts = dict(loop.counts)
    counts[p.status.value] = counts.get(p.status.value, 0) + 1
    results, size, truncated = loop.results, loop.results_bytes, loop.results_truncated
    if not truncated and size + len(p.outputs) <= MAX_LOOP_RESULTS_BYTES:
        results, size = ((p.index, p.outputs), results), size + len(p.outputs) + 1
    else:
        truncated = True
    failure = loop.first_failure
    if failure is None and p.status is not InstanceStatus.SUCCEEDED:
        failure = f"iteration {p.index} ended {p.status.value}" + (
            f": {p.reason}" if p.reason else ""
        )
    new = replace(
        loop,
        running=loop.running - {p.index},
        counts=counts,
        results=results,
        results_bytes=size,
        results_truncated=truncated,
        last_outputs=p.outputs,
        first_failure=failure,
    )
    return _set_step(s, e, p.step_id, replace(old, loop=new))


FOLDS: dict[type, Callable[[Any, Event, Any], InstanceState]] = {
    InstanceStarted: _started,
    InstanceRestarted: _restarted,
    InstanceSucceeded: _ended(InstanceStatus.SUCCEEDED),
    InstanceFailed: _ended(InstanceStatus.FAILED),
    InstanceStopped: _ended(InstanceStatus.STOPPED),
    InstanceTimedOut: _ended(InstanceStatus.TIMED_OUT),
    StepAttemptCreated: _attempt_created,
    StepAttemptStarted: _attempt_started,
    StepAttemptSucceeded: _attempt_succeeded,
    StepAttemptFailed: _attempt_failed,
    StepStopped: _step_stopped,
    StepUnsatisfied: _step_unsatisfied,
    StepEvaluationFailed: _step_evaluation_failed,
    InstancePaused: _paused,
    InstanceResumed: _resumed,
    StepSkipped: _step_skipped,
    StepRestarted: _step_restarted,
    BreakpointSet: _breakpoint_set,
    StepPaused: _step_paused,
    StepResumed: _step_resumed,
    LoopStarted: _loop_started,
    LoopIterationsStarted: _iterations_started,
    LoopIterationEnded: _iteration_ended,
    StepWaitingForSignals: _waiting_for_signals,
    StepSignalMatched: _signal_matched,
    StepSignalsBypassed: _signals_bypassed,
}


def evolve_instance(state: InstanceState | None, event: Event) -> InstanceState:
    handler = FOLDS.get(type(event.payload))
    if handler is None:
        raise CorruptLog(f"{event.type} is not an instance event")
    if state is None and not isinstance(event.payload, InstanceStarted):
        raise CorruptLog(f"{event.event_id}: {event.type} before InstanceStarted")
    if state is not None and event.seq != state.seq + 1:
        raise CorruptLog(f"{event.event_id}: seq {event.seq} after {state.seq}")
    return handler(state, event, event.payload)


def fold(events: list[Event], state: InstanceState | None = None) -> InstanceState | None:
    for e in events:
        state = evolve_instance(state, e)
    return state
