"""The instance's lifecycle: start, stop, kill, restart, pause, resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from services.domain.instance.attempts import stop_active
from services.domain.instance.breakpoints import start_breakpoints
from services.domain.instance.draft import Draft
from services.domain.instance.scheduler import advance
from services.domain.instance.state import InstanceState
from services.domain.instance.views import run_builtins
from services.domain.kernel.clock import MICROS
from services.domain.kernel.documents import (
    NUL_MESSAGE,
    dumps,
    json_holds_nul,
    load_json,
)
from services.domain.kernel.errors import DefinitionError, ExpressionError, Rejected
from services.domain.kernel.statuses import (
    INSTANCE_ACTIONS,
    RestartMode,
    StepStatus,
)
from services.domain.language.evaluation import (
    builtins,
    check_overrides,
    evaluate_start_params,
    restart_params,
)
from services.domain.language.workflow import Workflow, load_workflow
from services.domain.protocol.commands import (
    KillInstance,
    PauseInstance,
    QueueInstance,
    RestartInstance,
    ResumeInstance,
    StartInstance,
    StopInstance,
)
from services.domain.protocol.events import (
    InstanceFailed,
    InstancePaused,
    InstanceRestarted,
    InstanceResumed,
    InstanceStarted,
    InstanceStopped,
)


def _start(d: Draft, c: StartInstance) -> None:
    if d.state is not None:
        return  # idempotent: the instance id is derived from the idempotency key
    wf, given = _judged_start(c)
    if not c.admitted:
        # Judged first, so only a start that can run takes a place in the queue.
        d.send(
            QueueInstance(
                workflow_id=c.workflow_id,
                instance_id=c.instance_id,
                version=c.version,
                definition=c.definition,
                params=c.params,
                initiator=c.initiator,
                idempotency_key=c.idempotency_key,
            )
        )
        return
    params, failure = _start_params(d, c, wf, given)
    d.emit(
        InstanceStarted(
            version=c.version,
            definition=c.definition,
            params=dumps(params),
            initiator=c.initiator,
            idempotency_key=c.idempotency_key,
            timeout_at=d.now + round(wf.timeout * MICROS),
            parent_instance_id=c.parent_instance_id,
            parent_step_id=c.parent_step_id,
            parent_attempt=c.parent_attempt,
            depth=c.depth,
            loop=c.loop,
        ),
        workflow_id=c.workflow_id,
    )
    start_breakpoints(d, c.breakpoints)
    if failure is not None:
        d.emit(InstanceFailed(1, f"params could not be evaluated: {failure}", (), killed=False))
        return
    advance(d)


def _judged_start(c: StartInstance) -> tuple[Workflow, dict[str, Any]]:
    """The start's definition and given params, or Rejected saying why it can never run."""
    if json_holds_nul(c.definition):
        # load_workflow decodes without `check_shape`; the read models would refuse it.
        raise Rejected(f"definition: {NUL_MESSAGE}")
    try:
        wf = load_workflow(c.definition)
        overrides = load_json(c.params)
        if not isinstance(overrides, dict):
            raise Rejected("params must be a JSON object")
        # A loop's iteration starts with the params its parent evaluated for it.
        given = overrides if c.loop is not None else check_overrides(wf, overrides)
    except DefinitionError as err:
        raise Rejected(str(err)) from None
    except json.JSONDecodeError as err:
        raise Rejected(f"definition or params are not JSON: {err}") from None
    return wf, given


def _start_params(
    d: Draft, c: StartInstance, wf: Workflow, given: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The first run's params, and why they could not be evaluated (None: they could)."""
    if c.loop is not None:
        return given, None
    base = builtins(
        workflow_id=c.workflow_id,
        version=c.version,
        time_zone=wf.time_zone,
        instance_id=c.instance_id,
        run=1,
        initiator=c.initiator,
        started_at=d.now,
        run_started_at=d.now,
    )
    try:
        return evaluate_start_params(wf, given, base), None
    except ExpressionError as err:
        return given, str(err)


def _stop(d: Draft, c: StopInstance) -> None:
    if not d.state or d.s.status.is_terminal:
        return
    stop_active(d, StepStatus.STOPPED, c.reason or "instance stopped")
    d.emit(InstanceStopped(d.s.run, c.reason or "stopped by request"))


def _kill(d: Draft, c: KillInstance) -> None:
    if not d.state or d.s.status.is_terminal:
        return
    stop_active(d, StepStatus.STOPPED, c.reason or "instance killed")
    d.emit(InstanceFailed(d.s.run, c.reason or "killed by request", (), killed=True))


def _restart(d: Draft, c: RestartInstance) -> None:
    if not d.state or not d.s.status.is_terminal:
        return
    if c.expected_run is not None and c.expected_run != d.s.run:
        return  # a retry of a restart that already made a newer run
    wf = d.s.workflow
    try:
        overrides = load_json(c.params)
        if not isinstance(overrides, dict):
            raise Rejected("params must be a JSON object")
        check_overrides(wf, overrides, restart=True)
    except DefinitionError as err:
        raise Rejected(str(err)) from None
    except json.JSONDecodeError as err:
        raise Rejected(f"params are not JSON: {err}") from None
    if c.mode is RestartMode.FROM_BEGINNING:
        reset = wf.dag.order
    elif c.mode is RestartMode.FROM_STEP:
        reset = _from_step(d.s, c.step_id)
    else:
        reset = tuple(sid for sid in wf.dag.order if not d.s.steps[sid].status.is_complete)
    if not reset:
        return  # every step completed: a run from the incomplete steps would do nothing
    run = d.s.run + 1
    base = run_builtins(replace(d.s, run=run, run_started_at=d.now))
    failure = None
    try:
        params = dumps(restart_params(wf, json.loads(d.s.params), overrides, base))
    except ExpressionError as err:
        params, failure = d.s.params, str(err)
    timeout_at = d.now + round(wf.timeout * MICROS)
    changed = None if params == d.s.params else params
    d.emit(InstanceRestarted(run, c.mode, reset, timeout_at, changed))
    if failure is not None:
        d.emit(InstanceFailed(run, f"params could not be evaluated: {failure}", (), False))
        return
    advance(d)


def _from_step(s: InstanceState, step_id: str | None) -> tuple[str, ...]:
    """The step and everything downstream of it, in definition order; the steps upstream must
    have completed (their results stand)."""
    dag = s.workflow.dag
    if step_id is None or step_id not in dag.steps:
        raise Rejected(f"FROM_STEP needs a step of the workflow, not {step_id!r}")
    blocked = dag.incomplete_upstream(step_id, {sid: st.status for sid, st in s.steps.items()})
    if blocked is not None:
        raise Rejected(
            f"step {step_id} cannot run again: upstream step {blocked} is"
            f" {s.steps[blocked].status.value}"
        )
    return dag.downstream_of(step_id)


def _pause(d: Draft, c: PauseInstance) -> None:
    if d.state is None or d.s.status not in INSTANCE_ACTIONS["pause"]:
        return
    d.emit(InstancePaused(d.s.run, c.reason or "paused by request"))


def _resume(d: Draft, c: ResumeInstance) -> None:
    if d.state is None or d.s.status not in INSTANCE_ACTIONS["resume"]:
        return
    d.emit(InstanceResumed(d.s.run))
    advance(d)


RULES: dict[type, Callable[[Draft, Any], None]] = {
    StartInstance: _start,
    StopInstance: _stop,
    KillInstance: _kill,
    RestartInstance: _restart,
    PauseInstance: _pause,
    ResumeInstance: _resume,
}
