"""decide(state, command, now) -> events: every rule of the instance lifecycle.

Pure: time comes in as `now` (UTC microseconds), event ids are derived from the aggregate id
and sequence number. A command that no longer applies (a duplicate, a report for an old
attempt, a stop of a finished instance) decides no events. A command that can never apply
raises `Rejected`, and the engine dead-letters it with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from services.domain.commands import (
    ActivateWorkflow,
    Command,
    DeactivateWorkflow,
    ExpireHeartbeat,
    FireTimers,
    KillInstance,
    PauseInstance,
    PauseStep,
    PushWorkflow,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    ResumeStep,
    SkipStep,
    StartInstance,
    StopInstance,
    StopStep,
)
from services.domain.dag import param_sources
from services.domain.definition import (
    ENGINE_STEP_TYPES,
    DefinitionError,
    ExponentialBackoff,
    RetryPolicy,
    load_workflow,
    parse_workflow,
)
from services.domain.evaluation import (
    builtins,
    check_overrides,
    context,
    evaluate_condition,
    evaluate_params,
    parsed_outputs,
    restart_params,
    start_params,
)
from services.domain.events import (
    BreakpointSet,
    Event,
    EventPayload,
    InstanceFailed,
    InstancePaused,
    InstanceRestarted,
    InstanceResumed,
    InstanceStarted,
    InstanceStopped,
    InstanceSucceeded,
    InstanceTimedOut,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepAttemptSucceeded,
    StepEvaluationFailed,
    StepPaused,
    StepRestarted,
    StepResumed,
    StepSkipped,
    StepStopped,
    StepUnsatisfied,
    WorkflowActivated,
    WorkflowDeactivated,
    WorkflowVersionCreated,
)
from services.domain.evolve import evolve, evolve_workflow
from services.domain.expressions import ExpressionError, member_paths
from services.domain.state import InstanceState, StepState, WorkflowState
from services.domain.statuses import (
    INSTANCE_ACTIONS,
    STEP_ACTIONS,
    FailureKind,
    FailureMode,
    InstanceStatus,
    RestartMode,
    StepStatus,
)

MICROS = 1_000_000


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Rejected(ValueError):
    """The command can never apply; the reason is recorded with the dead-lettered command."""


class _Draft:
    """Applies each decided event at once, so later rules see the state it leads to."""

    def __init__(
        self, state: InstanceState | None, instance_id: str, now: int, caused_at: int | None
    ) -> None:
        self.state = state
        self.instance_id = instance_id
        self.now = now
        self.caused_at = caused_at
        self.events: list[Event] = []

    @property
    def s(self) -> InstanceState:
        assert self.state is not None
        return self.state

    def emit(self, payload: EventPayload, workflow_id: str | None = None) -> None:
        seq = (self.state.seq if self.state else 0) + 1
        event = Event(
            event_id=f"{self.instance_id}:{seq}",
            instance_id=self.instance_id,
            workflow_id=workflow_id or self.s.workflow_id,
            seq=seq,
            occurred_at=self.now,
            payload=payload,
            caused_at=self.caused_at,
        )
        self.state = evolve(self.state, event)
        self.events.append(event)


def _live(d: _Draft) -> bool:
    """Running or paused: reports, timers, stops and step actions apply."""
    return d.state is not None and d.state.status.is_live


def _current(d: _Draft, step_id: str, attempt: int, *statuses: StepStatus) -> bool:
    """True when the report is about the step's newest attempt, in one of `statuses`."""
    if not _live(d):
        return False
    st = d.s.steps.get(step_id)
    return st is not None and st.attempt == attempt and st.status in statuses


# --- rules shared by several commands -------------------------------------------------


def _base(s: InstanceState) -> dict[str, Any]:
    """The built-ins of the instance's current run."""
    return builtins(
        workflow_id=s.workflow_id,
        version=s.version,
        time_zone=s.workflow.time_zone,
        instance_id=s.instance_id,
        run=s.run,
        initiator=s.initiator,
        started_at=s.started_at,
        run_started_at=s.run_started_at,
    )


@lru_cache(maxsize=16384)
def _steps_read(definition: str, step_id: str) -> frozenset[str]:
    """The steps whose status and outputs the step's params and incoming conditions read (all
    its ancestors when one indexes `steps` with a computed key)."""
    wf = load_workflow(definition)
    dag = wf.dag
    sources = [src for p in dag.steps[step_id].params.values() for src, _ in param_sources(p)]
    sources += [c for (_, to), c in dag.conditions.items() if to == step_id]
    read: set[str] = set()
    for src in sources:
        paths = member_paths(src)
        if paths.steps_dynamic:
            return dag.ancestors[step_id]
        read |= paths.steps
    return frozenset(read)


def _steps_view(s: InstanceState, step_id: str) -> dict[str, Any]:
    view = {}
    for sid in _steps_read(s.definition, step_id):
        st = s.steps[sid]
        outputs = parsed_outputs(st.outputs) if st.outputs else {}
        view[sid] = {"status": st.status.value, "outputs": outputs}
    return view


def _create_attempt(d: _Draft, step_id: str) -> None:
    wf = d.s.workflow
    step = wf.dag.steps[step_id]
    attempt = d.s.steps[step_id].attempt + 1
    if not step.params:
        params = d.s.params  # the run's params, as recorded: nothing to merge
    elif not wf.dag.dynamic_params[step_id]:
        merged = json.loads(d.s.params)
        merged.update({k: p.value for k, p in step.params.items()})
        params = _dumps(merged)
    else:
        try:
            values = evaluate_params(
                step.params,
                wf.dag.param_order[step_id],
                json.loads(d.s.params),
                _base(d.s),
                _steps_view(d.s, step_id),
            )
        except ExpressionError as err:
            d.emit(StepEvaluationFailed(step_id, d.s.run, str(err)))
            return
        params = _dumps(values)
    engine_run = step.type in ENGINE_STEP_TYPES
    d.emit(
        StepAttemptCreated(
            step_id=step_id,
            attempt=attempt,
            run=d.s.run,
            step_type=step.type,
            queue=None if engine_run else step.queue,
            params=params,
        )
    )
    if step.type == "sleep":
        wake_at = d.now + round(step.duration * MICROS)
        d.emit(StepAttemptStarted(step_id, attempt, "engine", timeout_at=None, wake_at=wake_at))


def retry_delay(policy: RetryPolicy, kind: FailureKind, retry_number: int) -> float:
    """Seconds before retry number `retry_number` (1-based) of a failure class."""
    b = policy.backoff
    if isinstance(b, ExponentialBackoff):
        cap = {
            FailureKind.USER: b.user_max_seconds,
            FailureKind.PLATFORM: b.platform_max_seconds,
            FailureKind.TIMEOUT: b.timeout_max_seconds,
        }[kind]
        return float(min(cap, b.base_seconds * b.exponent ** (retry_number - 1)))
    return {
        FailureKind.USER: b.user_seconds,
        FailureKind.PLATFORM: b.platform_seconds,
        FailureKind.TIMEOUT: b.timeout_seconds,
    }[kind]


def _fail_attempt(
    d: _Draft, step_id: str, kind: FailureKind, message: str, output_tail: str = ""
) -> None:
    step = d.s.workflow.dag.steps[step_id]
    st = d.s.steps[step_id]
    policy = step.retry_policy
    used = st.failures(kind) + 1
    limit = {
        FailureKind.USER: policy.user_limit,
        FailureKind.PLATFORM: policy.platform_limit,
        FailureKind.TIMEOUT: policy.timeout_limit,
    }[kind]
    retry_at: int | None = None
    if policy.retryable and used <= limit:
        status = StepStatus.WAITING_FOR_RETRY
        retry_at = d.now + round(retry_delay(policy, kind, used) * MICROS)
    elif step.failure_mode is FailureMode.IGNORE_FAILURE:
        status = StepStatus.COMPLETED_WITH_ERROR
    elif not policy.retryable:
        status = StepStatus.FATALLY_FAILED
    else:
        status = kind.step_status
    d.emit(
        StepAttemptFailed(
            step_id=step_id,
            attempt=st.attempt,
            kind=kind,
            message=message,
            output_tail=output_tail,
            step_status=status,
            retry_at=retry_at,
        )
    )


def _stop_active(d: _Draft, status: StepStatus, reason: str) -> None:
    for sid in d.s.workflow.dag.order:
        st = d.s.steps[sid]
        if st.status.is_active:
            d.emit(StepStopped(step_id=sid, attempt=st.attempt, status=status, reason=reason))


def _incoming(d: _Draft, step_id: str) -> bool | None:
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
            ctx = context(json.loads(d.s.params), _base(d.s), _steps_view(d.s, step_id))
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


def _failed_fast(d: _Draft) -> bool:
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
    _stop_active(d, StepStatus.STOPPED, f"step {fatal[0]} failed ({why})")
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


def _ready(s: InstanceState, sid: str) -> bool:
    """Not created yet, and every predecessor complete."""
    dag = s.workflow.dag
    return s.steps[sid].status is StepStatus.NOT_CREATED and all(
        s.steps[p].status.is_complete for p in dag.predecessors[sid]
    )


def _advance(d: _Draft) -> None:
    """Decide every step whose predecessors are all complete (run it, or find it unsatisfied),
    and every retry that is due, in topological order, as far as pause and the step
    concurrency allow; end the run when nothing can run any more."""
    if not _live(d) or _failed_fast(d):
        return
    dag = d.s.workflow.dag
    if d.s.status is InstanceStatus.IN_PROGRESS:
        for sid in dag.topo:
            st = d.s.steps[sid]
            due_retry = (
                st.status is StepStatus.WAITING_FOR_RETRY
                and st.retry_at is not None
                and st.retry_at <= d.now
            )
            if not due_retry and not _ready(d.s, sid):
                continue
            if not due_retry and dag.predecessors[sid]:
                taken = _incoming(d, sid)
                if taken is None:
                    break  # an evaluation failed: the run ends (below), nothing more starts
                if not taken:
                    continue
            if not due_retry and sid in d.s.breakpoints and not st.released:
                d.emit(StepPaused(sid, d.s.run))
                continue
            slots = _slots(d.s)
            if slots == 0:
                continue  # waits for a running attempt to end (the next report decides it)
            _create_attempt(d, sid)
            if d.s.steps[sid].status is StepStatus.INTERNALLY_FAILED:
                break
        if _failed_fast(d):
            return
    steps = d.s.steps
    if any(st.status.is_active for st in steps.values()):
        return
    if d.s.status is InstanceStatus.PAUSED and any(_ready(d.s, sid) for sid in dag.order):
        return  # waits for resume
    failed = tuple(sid for sid in dag.order if steps[sid].status.is_failure)
    stopped = tuple(sid for sid in dag.order if steps[sid].status is StepStatus.STOPPED)
    if failed:
        d.emit(InstanceFailed(d.s.run, "step(s) failed: " + ", ".join(failed), failed, False))
    elif stopped:
        d.emit(InstanceStopped(d.s.run, "step(s) stopped: " + ", ".join(stopped)))
    else:
        d.emit(InstanceSucceeded(d.s.run))


# --- one handler per command ------------------------------------------------------------


def _start(d: _Draft, c: StartInstance) -> None:
    if d.state is not None:
        return  # idempotent: the instance id is derived from the idempotency key
    try:
        wf = load_workflow(c.definition)
        overrides = json.loads(c.params)
        if not isinstance(overrides, dict):
            raise Rejected("params must be a JSON object")
        given = check_overrides(wf, overrides)
    except DefinitionError as err:
        raise Rejected(str(err)) from None
    except json.JSONDecodeError as err:
        raise Rejected(f"definition or params are not JSON: {err}") from None
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
        params = start_params(wf, overrides, base)
    except ExpressionError as err:
        params, failure = given, str(err)
    d.emit(
        InstanceStarted(
            version=c.version,
            definition=c.definition,
            params=_dumps(params),
            initiator=c.initiator,
            idempotency_key=c.idempotency_key,
            timeout_at=d.now + round(wf.timeout * MICROS),
        ),
        workflow_id=c.workflow_id,
    )
    if failure is not None:
        d.emit(InstanceFailed(1, f"params could not be evaluated: {failure}", (), killed=False))
        return
    _advance(d)


def _stop(d: _Draft, c: StopInstance) -> None:
    if not d.state or d.s.status.is_terminal:
        return
    _stop_active(d, StepStatus.STOPPED, c.reason or "instance stopped")
    d.emit(InstanceStopped(d.s.run, c.reason or "stopped by request"))


def _kill(d: _Draft, c: KillInstance) -> None:
    if not d.state or d.s.status.is_terminal:
        return
    _stop_active(d, StepStatus.STOPPED, c.reason or "instance killed")
    d.emit(InstanceFailed(d.s.run, c.reason or "killed by request", (), killed=True))


def _restart(d: _Draft, c: RestartInstance) -> None:
    if not d.state or not d.s.status.is_terminal:
        return
    if c.expected_run is not None and c.expected_run != d.s.run:
        return  # a retry of a restart that already made a newer run
    wf = d.s.workflow
    try:
        overrides = json.loads(c.params)
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
    base = builtins(
        workflow_id=d.s.workflow_id,
        version=d.s.version,
        time_zone=wf.time_zone,
        instance_id=d.s.instance_id,
        run=run,
        initiator=d.s.initiator,
        started_at=d.s.started_at,
        run_started_at=d.now,
    )
    failure = None
    try:
        params = _dumps(restart_params(wf, json.loads(d.s.params), overrides, base))
    except ExpressionError as err:
        params, failure = d.s.params, str(err)
    timeout_at = d.now + round(wf.timeout * MICROS)
    changed = None if params == d.s.params else params
    d.emit(InstanceRestarted(run, c.mode, reset, timeout_at, changed))
    if failure is not None:
        d.emit(InstanceFailed(run, f"params could not be evaluated: {failure}", (), False))
        return
    _advance(d)


def _from_step(s: InstanceState, step_id: str | None) -> tuple[str, ...]:
    """The step and everything downstream of it, in definition order; the steps upstream must
    have completed (their results stand)."""
    dag = s.workflow.dag
    if step_id is None or step_id not in dag.steps:
        raise Rejected(f"FROM_STEP needs a step of the workflow, not {step_id!r}")
    blocked = [
        a for a in dag.order if a in dag.ancestors[step_id] and not s.steps[a].status.is_complete
    ]
    if blocked:
        raise Rejected(
            f"step {step_id} cannot run again: upstream step {blocked[0]} is"
            f" {s.steps[blocked[0]].status.value}"
        )
    downstream = {sid for sid in dag.order if step_id in dag.ancestors[sid]}
    return tuple(sid for sid in dag.order if sid == step_id or sid in downstream)


def _pause(d: _Draft, c: PauseInstance) -> None:
    if d.state is None or d.s.status not in INSTANCE_ACTIONS["pause"]:
        return
    d.emit(InstancePaused(d.s.run, c.reason or "paused by request"))


def _resume(d: _Draft, c: ResumeInstance) -> None:
    if d.state is None or d.s.status not in INSTANCE_ACTIONS["resume"]:
        return
    d.emit(InstanceResumed(d.s.run))
    _advance(d)


def _step(d: _Draft, step_id: str) -> StepState | None:
    """The step of a live run, or None; an unknown step id can never apply."""
    if not _live(d):
        return None
    st = d.s.steps.get(step_id)
    if st is None:
        raise Rejected(f"the workflow has no step {step_id!r}")
    return st


def _skip_step(d: _Draft, c: SkipStep) -> None:
    st = _step(d, c.step_id)
    if st is None or st.status not in STEP_ACTIONS["skip"]:
        return
    attempt = st.attempt if st.status in (StepStatus.STARTING, StepStatus.RUNNING) else 0
    d.emit(StepSkipped(c.step_id, d.s.run, attempt, c.reason or "skipped by request"))
    _advance(d)


def _stop_step(d: _Draft, c: StopStep) -> None:
    st = _step(d, c.step_id)
    if st is None or st.status not in STEP_ACTIONS["stop"]:
        return
    d.emit(StepStopped(c.step_id, st.attempt, StepStatus.STOPPED, c.reason or "stopped by request"))
    _advance(d)


def _restart_step(d: _Draft, c: RestartStep) -> None:
    st = _step(d, c.step_id)
    if st is None or st.status not in STEP_ACTIONS["restart"]:
        return
    d.emit(StepRestarted(c.step_id, d.s.run))
    _advance(d)


def _pause_step(d: _Draft, c: PauseStep) -> None:
    st = _step(d, c.step_id)
    if st is None or c.step_id in d.s.breakpoints:
        return
    d.emit(BreakpointSet(c.step_id, enabled=True))


def _resume_step(d: _Draft, c: ResumeStep) -> None:
    st = _step(d, c.step_id)
    if st is None:
        return
    if st.status is StepStatus.PAUSED:
        # Released for this run; the breakpoint stays (a restart pauses there again).
        d.emit(StepResumed(c.step_id, d.s.run))
        _advance(d)
    elif c.step_id in d.s.breakpoints:
        d.emit(BreakpointSet(c.step_id, enabled=False))  # cleared before it is reached


def _report_started(d: _Draft, c: ReportAttemptStarted) -> None:
    if not _current(d, c.step_id, c.attempt, StepStatus.STARTING):
        return
    timeout = d.s.workflow.dag.steps[c.step_id].timeout
    timeout_at = None if timeout is None else d.now + round(timeout * MICROS)
    d.emit(StepAttemptStarted(c.step_id, c.attempt, c.worker_id, timeout_at, wake_at=None))


def _report_succeeded(d: _Draft, c: ReportAttemptSucceeded) -> None:
    if not _current(d, c.step_id, c.attempt, StepStatus.STARTING, StepStatus.RUNNING):
        return
    d.emit(StepAttemptSucceeded(c.step_id, c.attempt, c.outputs))
    _advance(d)


def _report_failed(d: _Draft, c: ReportAttemptFailed) -> None:
    if not _current(d, c.step_id, c.attempt, StepStatus.STARTING, StepStatus.RUNNING):
        return
    _fail_attempt(d, c.step_id, c.kind, c.message, c.output_tail)
    _advance(d)


def _heartbeat(d: _Draft, c: ReportAttemptHeartbeat) -> None:
    return  # liveness only: the engine notes it outside the fold; no transition


def _expire_heartbeat(d: _Draft, c: ExpireHeartbeat) -> None:
    if not _current(d, c.step_id, c.attempt, StepStatus.RUNNING):
        return
    if d.s.workflow.dag.steps[c.step_id].type in ENGINE_STEP_TYPES:
        return
    msg = f"worker silent for {c.silent_seconds:.0f}s (no heartbeat): presumed dead"
    _fail_attempt(d, c.step_id, FailureKind.PLATFORM, msg)
    _advance(d)


def _fire_timers(d: _Draft, c: FireTimers) -> None:
    if not _live(d):
        return
    now = d.now
    if now >= d.s.timeout_at:
        _stop_active(d, StepStatus.TIMED_OUT, "workflow timeout")
        d.emit(InstanceTimedOut(d.s.run))
        return
    # Due retries are created by _advance, within pause and the step concurrency.
    for sid in d.s.workflow.dag.order:
        st = d.s.steps[sid]
        if st.status is StepStatus.RUNNING and st.wake_at is not None:
            if st.wake_at <= now:
                d.emit(StepAttemptSucceeded(sid, st.attempt, "{}"))
        elif st.status.is_active and st.timeout_at is not None and st.timeout_at <= now:
            timeout = d.s.workflow.dag.steps[sid].timeout
            _fail_attempt(d, sid, FailureKind.TIMEOUT, f"step timed out after {timeout:g}s")
    _advance(d)


_HANDLERS: dict[type, Callable[[_Draft, Any], None]] = {
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
    ReportAttemptStarted: _report_started,
    ReportAttemptSucceeded: _report_succeeded,
    ReportAttemptFailed: _report_failed,
    ReportAttemptHeartbeat: _heartbeat,
    ExpireHeartbeat: _expire_heartbeat,
    FireTimers: _fire_timers,
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
    if isinstance(command, PushWorkflow | ActivateWorkflow | DeactivateWorkflow):
        raise TypeError(f"{type(command).__name__} addresses a workflow: use decide_workflow")
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"no rule for {type(command).__name__}")
    d = _Draft(state, command.instance_id, now, caused_at)
    handler(d, command)
    return d.events, d.state


def decide_workflow(
    state: WorkflowState | None,
    command: PushWorkflow | ActivateWorkflow | DeactivateWorkflow,
    now: int,
    caused_at: int | None = None,
) -> list[Event]:
    """Versions and activation: the workflow aggregate's rules."""
    payloads: list[EventPayload] = []
    if isinstance(command, PushWorkflow):
        try:
            wf = parse_workflow(json.loads(command.definition))
        except DefinitionError as err:
            raise Rejected(str(err)) from None
        except json.JSONDecodeError as err:
            raise Rejected(f"definition is not JSON: {err}") from None
        if wf.id != command.workflow_id:
            raise Rejected(
                f"definition id {wf.id!r} differs from workflow id {command.workflow_id!r}"
            )
        version = (state.latest_version if state else 0) + 1
        payloads.append(WorkflowVersionCreated(version=version, definition=wf.to_json()))
        if command.activate:
            payloads.append(WorkflowActivated(version))
    elif state is None:
        raise Rejected(f"workflow {command.workflow_id!r} has no version")
    elif isinstance(command, ActivateWorkflow):
        version = state.latest_version if command.version is None else command.version
        if not 1 <= version <= state.latest_version:
            raise Rejected(
                f"workflow {command.workflow_id!r} has versions 1 to {state.latest_version},"
                f" not {version}"
            )
        if version != state.active_version:
            payloads.append(WorkflowActivated(version))
    elif state.active_version is not None:
        payloads.append(WorkflowDeactivated(state.active_version))
    events = []
    for payload in payloads:
        seq = (state.seq if state else 0) + 1
        event = Event(
            event_id=f"{command.workflow_id}:{seq}",
            instance_id=None,
            workflow_id=command.workflow_id,
            seq=seq,
            occurred_at=now,
            payload=payload,
            caused_at=caused_at,
        )
        state = evolve_workflow(state, event)  # the fold replay uses; raises if the log is wrong
        events.append(event)
    return events


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


def running_on_workers(state: InstanceState) -> list[tuple[str, StepState]]:
    """Attempts a worker has reported started: the ones whose heartbeats are watched."""
    if not state.status.is_live:
        return []
    return [
        (sid, st)
        for sid, st in state.steps.items()
        if st.status is StepStatus.RUNNING and st.wake_at is None
    ]


def handled_command_types() -> frozenset[type]:
    return frozenset(_HANDLERS) | {PushWorkflow, ActivateWorkflow, DeactivateWorkflow}
