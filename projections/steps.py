"""`steps`: one row per step of an instance's definition, with the step's current status.

Rows are created, all NOT_CREATED, when the instance starts, in definition order; the step
status follows the same transitions as the domain's `evolve`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from projections.tables import Batch, Handler, Key, Table, json_column, ts
from services.domain.kernel.statuses import StepStatus
from services.domain.language.workflow import load_workflow
from services.domain.protocol.events import (
    BreakpointSet,
    Event,
    EventPayload,
    InstanceRestarted,
    InstanceStarted,
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


def _step_keys(e: Event) -> Iterator[Key]:
    p = e.payload
    if isinstance(p, InstanceRestarted):
        yield from ((e.instance_id, sid) for sid in p.reset_steps)
    elif isinstance(
        p,
        StepAttemptCreated
        | StepAttemptStarted
        | StepAttemptSucceeded
        | StepAttemptFailed
        | StepStopped
        | StepUnsatisfied
        | StepEvaluationFailed
        | StepSkipped
        | StepRestarted
        | BreakpointSet
        | StepPaused
        | StepResumed
        | LoopStarted
        | LoopIterationsStarted
        | LoopIterationEnded
        | StepWaitingForSignals
        | StepSignalMatched
        | StepSignalsBypassed,
    ):
        yield (e.instance_id, p.step_id)


STEPS = Table(
    "steps",
    columns=(
        ("instance_id", "text"),
        ("step_id", "text"),
        ("position", "int4"),
        ("step_type", "text"),
        ("status", "text"),
        ("attempt", "int4"),
        ("run", "int4"),
        ("updated_at", "timestamptz"),
        ("reason", "text"),
        ("iterations", "jsonb"),  # a loop step: {total, started, statuses}
        ("signals", "jsonb"),  # a step with signal dependencies: {dependencies, matched}
    ),
    key=("instance_id", "step_id"),
    keys_of=_step_keys,
)
TABLES = (STEPS,)


def _set(b: Batch, e: Event, step_id: str, status: StepStatus, **changes: Any) -> None:
    b.update(
        STEPS,
        (e.instance_id, step_id),
        status=status.value,
        updated_at=ts(e.occurred_at),
        **changes,
    )


def _started(b: Batch, e: Event, p: InstanceStarted) -> None:
    at = ts(e.occurred_at)
    for position, step in enumerate(load_workflow(p.definition).steps):
        b.put(
            STEPS,
            {
                "instance_id": e.instance_id,
                "step_id": step.id,
                "position": position,
                "step_type": step.type,
                "status": StepStatus.NOT_CREATED.value,
                "attempt": 0,
                "run": 1,
                "updated_at": at,
                "reason": None,
                "iterations": None,
                "signals": None,
            },
        )


def _restarted(b: Batch, e: Event, p: InstanceRestarted) -> None:
    # The attempt number is kept: attempts count on across runs.
    for step_id in p.reset_steps:
        _set(b, e, step_id, StepStatus.NOT_CREATED, run=p.run, reason=None)


def _attempt_created(b: Batch, e: Event, p: StepAttemptCreated) -> None:
    _set(b, e, p.step_id, StepStatus.STARTING, attempt=p.attempt, run=p.run, reason=None)


def _attempt_started(b: Batch, e: Event, p: StepAttemptStarted) -> None:
    _set(b, e, p.step_id, StepStatus.RUNNING)


def _attempt_succeeded(b: Batch, e: Event, p: StepAttemptSucceeded) -> None:
    _set(b, e, p.step_id, StepStatus.SUCCEEDED)


def _attempt_failed(b: Batch, e: Event, p: StepAttemptFailed) -> None:
    _set(b, e, p.step_id, p.step_status)


def _step_stopped(b: Batch, e: Event, p: StepStopped) -> None:
    _set(b, e, p.step_id, p.status, reason=p.reason)


def _step_unsatisfied(b: Batch, e: Event, p: StepUnsatisfied) -> None:
    _set(b, e, p.step_id, StepStatus.UNSATISFIED, run=p.run, reason=p.reason)


def _step_evaluation_failed(b: Batch, e: Event, p: StepEvaluationFailed) -> None:
    _set(b, e, p.step_id, StepStatus.INTERNALLY_FAILED, run=p.run, reason=p.message)


def _step_skipped(b: Batch, e: Event, p: StepSkipped) -> None:
    _set(b, e, p.step_id, StepStatus.SKIPPED, reason=p.reason)


def _step_restarted(b: Batch, e: Event, p: StepRestarted) -> None:
    _set(b, e, p.step_id, StepStatus.NOT_CREATED, reason=None)


def _breakpoint_set(b: Batch, e: Event, p: BreakpointSet) -> None:
    # Only the reason changes: the step keeps its status until it reaches the breakpoint.
    b.update(
        STEPS,
        (e.instance_id, p.step_id),
        reason="breakpoint set" if p.enabled else None,
        updated_at=ts(e.occurred_at),
    )


def _step_paused(b: Batch, e: Event, p: StepPaused) -> None:
    _set(b, e, p.step_id, StepStatus.PAUSED, reason="paused at its breakpoint")


def _step_resumed(b: Batch, e: Event, p: StepResumed) -> None:
    _set(b, e, p.step_id, StepStatus.NOT_CREATED, reason=None)


def _iterations(b: Batch, e: Event, step_id: str) -> dict[str, Any] | None:
    progress: dict[str, Any] | None = json_column(
        b.get(STEPS, (e.instance_id, step_id)), "iterations"
    )
    return progress


def _put_iterations(b: Batch, e: Event, step_id: str, progress: dict[str, Any]) -> None:
    b.update(STEPS, (e.instance_id, step_id), iterations=json.dumps(progress, sort_keys=True))


def _loop_started(b: Batch, e: Event, p: LoopStarted) -> None:
    total = None if p.items is None else len(json.loads(p.items))
    _put_iterations(b, e, p.step_id, {"total": total, "started": 0, "statuses": {}})


def _iterations_started(b: Batch, e: Event, p: LoopIterationsStarted) -> None:
    progress = _iterations(b, e, p.step_id)
    if progress is not None:
        progress["started"] = p.first + p.count
        _put_iterations(b, e, p.step_id, progress)


def _iteration_ended(b: Batch, e: Event, p: LoopIterationEnded) -> None:
    progress = _iterations(b, e, p.step_id)
    if progress is not None:
        statuses = progress["statuses"]
        statuses[p.status.value] = statuses.get(p.status.value, 0) + 1
        _put_iterations(b, e, p.step_id, progress)


def _waiting_for_signals(b: Batch, e: Event, p: StepWaitingForSignals) -> None:
    deps = json.loads(p.dependencies)
    names = ", ".join(sorted({d["name"] for d in deps}))
    signals = json.dumps({"dependencies": deps, "matched": {}}, sort_keys=True)
    _set(
        b,
        e,
        p.step_id,
        StepStatus.WAITING_FOR_SIGNALS,
        run=p.run,
        reason=f"waiting for signals: {names}",
        signals=signals,
    )


def _signal_matched(b: Batch, e: Event, p: StepSignalMatched) -> None:
    signals: dict[str, Any] | None = json_column(
        b.get(STEPS, (e.instance_id, p.step_id)), "signals"
    )
    if signals is None:
        return
    signals["matched"][str(p.index)] = {"name": p.signal_name, "signal_seq": p.signal_seq}
    changes: dict[str, Any] = {"signals": json.dumps(signals, sort_keys=True)}
    if len(signals["matched"]) >= len(signals["dependencies"]):
        # Met: the step is about to start (the same decision creates its attempt, or it
        # waits for resume or a free slot).
        changes.update(status=StepStatus.NOT_CREATED.value, reason=None)
    b.update(STEPS, (e.instance_id, p.step_id), updated_at=ts(e.occurred_at), **changes)


def _signals_bypassed(b: Batch, e: Event, p: StepSignalsBypassed) -> None:
    _set(b, e, p.step_id, StepStatus.NOT_CREATED, reason=f"signals bypassed: {p.reason}")


HANDLERS: dict[type[EventPayload], Handler] = {
    InstanceStarted: _started,
    InstanceRestarted: _restarted,
    StepAttemptCreated: _attempt_created,
    StepAttemptStarted: _attempt_started,
    StepAttemptSucceeded: _attempt_succeeded,
    StepAttemptFailed: _attempt_failed,
    StepStopped: _step_stopped,
    StepUnsatisfied: _step_unsatisfied,
    StepEvaluationFailed: _step_evaluation_failed,
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
