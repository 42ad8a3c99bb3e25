"""Steps that wait for signals: the wait, the matches, the bypass, the withdrawal."""

from __future__ import annotations

import json
from typing import Any

from services.domain.instance.draft import Draft
from services.domain.instance.views import scope
from services.domain.kernel.documents import dumps
from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import StepStatus
from services.domain.language.evaluation import evaluate_param
from services.domain.language.signal_specs import Match, SignalDependency, match_to_json
from services.domain.protocol.commands import (
    AwaitSignal,
    BypassSignals,
    CancelSignalWait,
    DeliverSignal,
)
from services.domain.protocol.events import (
    StepEvaluationFailed,
    StepSignalMatched,
    StepSignalsBypassed,
    StepWaitingForSignals,
)


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
        ctx = scope(d.s, step_id)
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
