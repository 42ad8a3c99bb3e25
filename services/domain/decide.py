"""decide(state, command, now) -> events: every rule of the instance lifecycle.

Pure: time comes in as `now` (UTC microseconds), event ids are derived from the aggregate id
and sequence number. A command that no longer applies (a duplicate, a report for an old
attempt, a stop of a finished instance) decides no events. A command that can never apply
raises `Rejected`, and the engine dead-letters it with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from services.domain.breakpoints import apply_workflow_breakpoints, start_breakpoints
from services.domain.commands import (
    SIGNAL_COMMANDS,
    WORKFLOW_COMMANDS,
    ApplyWorkflowBreakpoints,
    BypassSignals,
    Command,
    DeliverSignal,
    ExpireHeartbeat,
    FireTimers,
    KillInstance,
    PauseInstance,
    PauseStep,
    QueueInstance,
    Rejected,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    ReportChildEnded,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    ResumeStep,
    SkipStep,
    StartInstance,
    StopInstance,
    StopStep,
    WorkflowCommand,
    is_signal_command,
    is_workflow_command,
    nul_field,
)
from services.domain.definition import load_workflow
from services.domain.documents import (
    NUL_MESSAGE,
    json_holds_nul,
    json_may_hold_unstorable,
    load_json,
)
from services.domain.evaluation import (
    builtins,
    check_overrides,
    evaluate_start_params,
    restart_params,
    run_builtins,
)
from services.domain.events import (
    BreakpointSet,
    Event,
    InstanceFailed,
    InstancePaused,
    InstanceRestarted,
    InstanceResumed,
    InstanceStarted,
    InstanceStopped,
    InstanceTimedOut,
    StepAttemptStarted,
    StepRestarted,
    StepResumed,
    StepSkipped,
    StepStopped,
)
from services.domain.expressions import ExpressionError
from services.domain.fields import DefinitionError
from services.domain.loops import iteration_ended
from services.domain.progress import (
    MICROS,
    Draft,
    advance,
    current,
    dumps,
    fail_attempt,
    live,
    stop_active,
)
from services.domain.reports import note_status
from services.domain.state import InstanceState, StepState, WorkflowState
from services.domain.statuses import (
    INSTANCE_ACTIONS,
    STEP_ACTIONS,
    FailureKind,
    InstanceStatus,
    RestartMode,
    StepStatus,
)
from services.domain.step_signals import bypass_signals, signal_delivered, succeed
from services.domain.steps import ENGINE_STEP_TYPES
from services.domain.workflows import decide_for_workflow


def _start(d: Draft, c: StartInstance) -> None:
    if d.state is not None:
        return  # idempotent: the instance id is derived from the idempotency key
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
    if not c.admitted:
        # Checked first, so only a start that can run takes a place in the queue.
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
    failure = None
    try:
        params = given if c.loop is not None else evaluate_start_params(wf, given, base)
    except ExpressionError as err:
        params, failure = given, str(err)
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


def _report_started(d: Draft, c: ReportAttemptStarted) -> None:
    if not current(d, c.step_id, c.attempt, StepStatus.STARTING):
        return
    timeout = d.s.workflow.dag.steps[c.step_id].timeout
    timeout_at = None if timeout is None else d.now + round(timeout * MICROS)
    d.emit(StepAttemptStarted(c.step_id, c.attempt, c.worker_id, timeout_at, wake_at=None))


def _report_succeeded(d: Draft, c: ReportAttemptSucceeded) -> None:
    if not current(d, c.step_id, c.attempt, StepStatus.STARTING, StepStatus.RUNNING):
        return
    fault = _outputs_fault(c.outputs)
    if fault is not None:
        # The step's own doing (its outputs file), and no event may carry what the read
        # models cannot hold: a user failure, as the worker reports it itself.
        fail_attempt(d, c.step_id, FailureKind.USER, f"outputs: {fault}")
    else:
        succeed(d, c.step_id, c.attempt, c.outputs)
    advance(d)


def _outputs_fault(outputs: str) -> str | None:
    """Why a step's outputs (JSON, from a worker) cannot be recorded, or None."""
    if not json_may_hold_unstorable(outputs):
        return None  # the common case, without decoding them
    try:
        load_json(outputs)
    except DefinitionError as err:
        return str(err).replace("\x00", "\ufffd")  # a key's path names the key, NUL and all
    except ValueError:
        return f"{NUL_MESSAGE} (and they are not JSON)"
    return None  # an escape of a surrogate pair: a character like any other


def _report_failed(d: Draft, c: ReportAttemptFailed) -> None:
    if not current(d, c.step_id, c.attempt, StepStatus.STARTING, StepStatus.RUNNING):
        return
    # A failure is recorded whatever it says, so its text is made storable rather than the
    # report refused (the attempt would wait for its timeout): U+FFFD, the replacement
    # character, stands for each NUL, as a decoder marks what it cannot represent.
    message, tail = (t.replace("\x00", "\ufffd") for t in (c.message, c.output_tail))
    fail_attempt(d, c.step_id, c.kind, message, tail)
    advance(d)


def _report_child_ended(d: Draft, c: ReportChildEnded) -> None:
    if c.iteration is not None:
        if iteration_ended(d, c):
            advance(d)
        return
    if not current(d, c.step_id, c.attempt, StepStatus.RUNNING):
        return  # the step was stopped, skipped or timed out meanwhile
    if c.status is InstanceStatus.SUCCEEDED:
        succeed(d, c.step_id, c.attempt, c.outputs)
    else:
        why = f": {c.reason}" if c.reason else ""
        msg = f"subworkflow instance {c.child_id} ended {c.status.value}{why}"
        fail_attempt(d, c.step_id, FailureKind.USER, msg)
    advance(d)


def _deliver_signal(d: Draft, c: DeliverSignal) -> None:
    if signal_delivered(d, c):
        advance(d)


def _bypass_signals(d: Draft, c: BypassSignals) -> None:
    _step(d, c.step_id)  # an unknown step can never apply
    if bypass_signals(d, c):
        advance(d)


def _heartbeat(d: Draft, c: ReportAttemptHeartbeat) -> None:
    return  # liveness only: the engine notes it outside the fold; no transition


def _expire_heartbeat(d: Draft, c: ExpireHeartbeat) -> None:
    if not current(d, c.step_id, c.attempt, StepStatus.RUNNING):
        return
    if d.s.workflow.dag.steps[c.step_id].type in ENGINE_STEP_TYPES:
        return
    msg = f"worker silent for {c.silent_seconds:.0f}s (no heartbeat): presumed dead"
    fail_attempt(d, c.step_id, FailureKind.PLATFORM, msg)
    advance(d)


def _fire_timers(d: Draft, c: FireTimers) -> None:
    if not live(d):
        return
    now = d.now
    if now >= d.s.timeout_at:
        stop_active(d, StepStatus.TIMED_OUT, "workflow timeout")
        d.emit(InstanceTimedOut(d.s.run))
        return
    # Due retries are created by _advance, within pause and the step concurrency.
    for sid in d.s.workflow.dag.order:
        st = d.s.steps[sid]
        if st.status is StepStatus.RUNNING and st.wake_at is not None:
            if st.wake_at <= now:
                succeed(d, sid, st.attempt, "{}")
        elif st.status.is_active and st.timeout_at is not None and st.timeout_at <= now:
            timeout = d.s.workflow.dag.steps[sid].timeout
            fail_attempt(d, sid, FailureKind.TIMEOUT, f"step timed out after {timeout:g}s")
    advance(d)


_HANDLERS: dict[type, Callable[[Draft, Any], None]] = {
    StartInstance: _start,
    StopInstance: _stop,
    KillInstance: _kill,
    RestartInstance: _restart,
    PauseInstance: _pause,
    ResumeInstance: _resume,
    SkipStep: _skip_step,
    StopStep: _stop_step,
    RestartStep: _restart_step,
    PauseStep: _pause_step,
    ResumeStep: _resume_step,
    ApplyWorkflowBreakpoints: apply_workflow_breakpoints,
    ReportAttemptStarted: _report_started,
    ReportAttemptSucceeded: _report_succeeded,
    ReportAttemptFailed: _report_failed,
    ReportAttemptHeartbeat: _heartbeat,
    ReportChildEnded: _report_child_ended,
    ExpireHeartbeat: _expire_heartbeat,
    FireTimers: _fire_timers,
    DeliverSignal: _deliver_signal,
    BypassSignals: _bypass_signals,
}


# Fields a report's rule makes storable itself (see _report_succeeded and _report_failed).
_JUDGED_BY_THEIR_RULE: dict[type, frozenset[str]] = {
    ReportAttemptSucceeded: frozenset({"outputs"}),
    ReportAttemptFailed: frozenset({"message", "output_tail"}),
}


def decide(
    state: InstanceState | None, command: Command, now: int, caused_at: int | None = None
) -> list[Event]:
    """The events `command` leads to at `now`. `caused_at` (the command's issue time on its
    sender's clock) is stamped on them as metadata."""
    return decide_and_fold(state, command, now, caused_at)[0]


def decide_and_fold(
    state: InstanceState | None, command: Command, now: int, caused_at: int | None = None
) -> tuple[list[Event], InstanceState | None]:
    """`decide`, and the state its events lead to: each rule already applies every event it
    decides (with `evolve`, the fold replay uses), so the engine need not fold them again."""
    d = decide_instance(state, command, now, caused_at)
    return d.events, d.state


def decide_instance(
    state: InstanceState | None, command: Command, now: int, caused_at: int | None = None
) -> Draft:
    """The instance's rules: the draft holds the events (folded into its state) and the
    commands they send to other aggregates."""
    if is_workflow_command(command):
        raise TypeError(f"{type(command).__name__} addresses a workflow: use decide_workflow")
    if is_signal_command(command):
        raise TypeError(f"{type(command).__name__} addresses a signal: use decide_signal")
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"no rule for {type(command).__name__}")
    nul = nul_field(command, _JUDGED_BY_THEIR_RULE.get(type(command), frozenset()))
    if nul is not None:
        raise Rejected(f"{nul}: {NUL_MESSAGE}")
    d = Draft(state, command.instance_id, now, caused_at)
    handler(d, command)
    if d.events:
        note_status(d, state)
    return d


def decide_workflow(
    state: WorkflowState | None,
    command: WorkflowCommand,
    now: int,
    caused_at: int | None = None,
) -> list[Event]:
    """The workflow aggregate's events (see workflows.py, which also gives what they send)."""
    return decide_for_workflow(state, command, now, caused_at).events


def handled_command_types() -> frozenset[type]:
    return frozenset(_HANDLERS) | set(WORKFLOW_COMMANDS) | set(SIGNAL_COMMANDS)
