"""A step's signals: it waits for its signal dependencies before it starts, and sends its
signal outputs when it succeeds.

Waiting is event-driven, never polled. The step records its wait (`StepWaitingForSignals`,
whose seq names the wait) and asks each signal's aggregate for a match (`AwaitSignal`). The
signal answers at once from the signals it has kept, or later, the moment a matching one
arrives (`DeliverSignal`). Once every dependency is met, or a user bypasses them, the step
starts like any other. A wait the step no longer needs is withdrawn (`CancelSignalWait`).
"""

from __future__ import annotations

import json
from typing import Any

from services.domain.commands import BypassSignals, DeliverSignal
from services.domain.evaluation import (
    context,
    evaluate_param,
    outputs_view,
    parsed_outputs,
    run_builtins,
)
from services.domain.events import (
    StepAttemptSucceeded,
    StepEvaluationFailed,
    StepSignalMatched,
    StepSignalsBypassed,
    StepWaitingForSignals,
)
from services.domain.expressions import ExpressionError
from services.domain.progress import Draft, dumps, fail_attempt
from services.domain.signal_commands import AwaitSignal, CancelSignalWait, SendSignal
from services.domain.signal_specs import Match, SignalDependency, match_to_json
from services.domain.state import InstanceState
from services.domain.statuses import FailureKind, StepStatus


def _scope(s: InstanceState, step_id: str, own_outputs: str | None = None) -> dict[str, Any]:
    """What match values and output params see: the run's params, the built-ins, the
    outputs of the steps upstream, and the step's own (for outputs, as it succeeds)."""
    view = outputs_view(s, s.workflow.dag.ancestors[step_id])
    if own_outputs is not None:
        view[step_id] = {"status": StepStatus.SUCCEEDED.value, "outputs": json.loads(own_outputs)}
    return context(parsed_outputs(s.params), run_builtins(s), view)


def _match(dep: SignalDependency, ctx: dict[str, Any]) -> Match:
    return tuple(
        (name, cond.op, evaluate_param(f"{dep.name}.match.{name}", cond.value, ctx))
        for name, cond in sorted(dep.match.items())
    )


def wait_for_signals(d: Draft, step_id: str) -> None:
    """The step waits for its signal dependencies (or fails, when their match values cannot
    be evaluated)."""
    deps = d.s.workflow.dag.steps[step_id].signal_dependencies
    try:
        ctx = _scope(d.s, step_id)
        matches = [_match(dep, ctx) for dep in deps]
    except ExpressionError as err:
        d.emit(StepEvaluationFailed(step_id, d.s.run, f"signal dependencies: {err}"))
        return
    wait = d.s.seq + 1  # the seq of the event below
    recorded = [
        {"name": dep.name, "match": json.loads(match_to_json(m))}
        for dep, m in zip(deps, matches, strict=True)
    ]
    d.emit(StepWaitingForSignals(step_id, d.s.run, dumps(recorded)))
    for index, (dep, m) in enumerate(zip(deps, matches, strict=True)):
        d.send(AwaitSignal(dep.name, d.instance_id, step_id, wait, index, match_to_json(m)))


def _waiting(d: Draft, step_id: str) -> bool:
    st = d.s.steps.get(step_id)
    return d.s.status.is_live and st is not None and st.status is StepStatus.WAITING_FOR_SIGNALS


def signal_delivered(d: Draft, c: DeliverSignal) -> bool:
    """A signal met one dependency of the step's wait. True when it applies (the caller then
    advances: it may have been the last)."""
    if d.state is None or not _waiting(d, c.step_id):
        return False  # bypassed, stopped, or the run ended: the signal stays with its name
    st = d.s.steps[c.step_id]
    if st.signal_wait != c.wait or c.index in st.signals_matched:
        return False  # an older wait's answer, or a duplicate
    d.emit(StepSignalMatched(c.step_id, c.index, c.signal_name, c.signal_seq, c.params))
    return True


def bypass_signals(d: Draft, c: BypassSignals) -> bool:
    if d.state is None or not _waiting(d, c.step_id):
        return False
    cancel_wait(d, c.step_id)
    d.emit(StepSignalsBypassed(c.step_id, c.reason or "bypassed by request"))
    return True


def cancel_wait(d: Draft, step_id: str) -> None:
    """Withdraw the step's open wait from every signal it still waits for."""
    st = d.s.steps[step_id]
    if st.status is not StepStatus.WAITING_FOR_SIGNALS or st.signal_wait is None:
        return
    deps = d.s.workflow.dag.steps[step_id].signal_dependencies
    names = sorted({dep.name for i, dep in enumerate(deps) if i not in st.signals_matched})
    for name in names:
        d.send(CancelSignalWait(name, d.instance_id, step_id, st.signal_wait))


def succeed(d: Draft, step_id: str, attempt: int, outputs: str) -> None:
    """The attempt succeeded: record it and send the step's signal outputs. Outputs whose
    params cannot be evaluated fail the attempt instead (a user failure, with the reason)."""
    step = d.s.workflow.dag.steps[step_id]
    signals: list[SendSignal] = []
    if step.signal_outputs:
        try:
            ctx = _scope(d.s, step_id, outputs)
            for i, out in enumerate(step.signal_outputs):
                params = {
                    name: evaluate_param(f"{out.name}.params.{name}", p, ctx)
                    for name, p in sorted(out.params.items())
                }
                signals.append(
                    SendSignal(
                        signal_name=out.name,
                        # Derived, so a decision replayed never sends a second signal.
                        request_id=f"{d.instance_id}/{step_id}/{attempt}/{i}",
                        params=dumps(params),
                        payload=dumps(out.payload),
                        sender=f"step:{d.instance_id}/{step_id}",
                    )
                )
        except ExpressionError as err:
            fail_attempt(d, step_id, FailureKind.USER, f"signal outputs: {err}")
            return
    d.emit(StepAttemptSucceeded(step_id, attempt, outputs))
    for signal in signals:
        d.send(signal)
