"""How a run moves forward: the draft that applies each decided event at once, attempts
and their failures and retries, conditions on edges, and `advance`, which decides every step
that can run and ends the run when nothing can. The rules of each command (decide.py) are
built from these. Pure, like the rest of the domain: time comes in as `now`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.domain.commands import ROUTE_SEPARATOR, Command, StartChild, StopInstance
from services.domain.dag import Dag
from services.domain.evaluation import (
    context,
    evaluate_condition,
    evaluate_params,
    run_builtins,
    steps_view,
)
from services.domain.events import (
    Event,
    EventPayload,
    InstanceFailed,
    InstanceStopped,
    InstanceSucceeded,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepEvaluationFailed,
    StepPaused,
    StepSkipped,
    StepStopped,
    StepUnsatisfied,
)
from services.domain.evolve import evolve
from services.domain.expressions import ExpressionError
from services.domain.state import InstanceState, StepState
from services.domain.statuses import (
    FailureKind,
    FailureMode,
    InstanceStatus,
    StepStatus,
)
from services.domain.steps import (
    ENGINE_STEP_TYPES,
    LOOP_STEP_TYPES,
    ExponentialBackoff,
    ForeachStep,
    RetryPolicy,
    SleepStep,
    SubworkflowStep,
    WhileStep,
)

MICROS = 1_000_000
# The worker id of attempts the engine runs itself (sleep, subworkflow): no heartbeats.
ENGINE_WORKER = "engine"


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_ENDS_ATTEMPT = (StepStopped, StepSkipped, StepAttemptFailed, StepEvaluationFailed)


class Draft:
    """Applies each decided event at once, so later rules see the state it leads to."""

    def __init__(
        self, state: InstanceState | None, instance_id: str, now: int, caused_at: int | None
    ) -> None:
        self.state = state
        self.instance_id = instance_id
        self.now = now
        self.caused_at = caused_at
        self.events: list[Event] = []
        self.sent: list[Command] = []  # commands for other aggregates, sent with the events

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
        if isinstance(payload, _ENDS_ATTEMPT):
            self._cancel_children(payload)  # before the fold: the children as they run now
        self.state = evolve(self.state, event)
        self.events.append(event)

    def _cancel_children(
        self, p: StepStopped | StepSkipped | StepAttemptFailed | StepEvaluationFailed
    ) -> None:
        """Cancellation propagates down: a step attempt that ends other than by its
        children's reports (stopped, skipped, timed out, failed) stops the children still
        running: a sync subworkflow's child instance, a loop's running iterations. A step
        that ends while waiting for signals withdraws its wait."""
        st = self.s.steps[p.step_id]
        if st.status is StepStatus.WAITING_FOR_SIGNALS:
            from services.domain.step_signals import cancel_wait  # built from this module

            cancel_wait(self, p.step_id)
            return
        if st.status not in (StepStatus.STARTING, StepStatus.RUNNING):
            return
        why = getattr(p, "reason", None) or getattr(p, "message", "")
        reason = f"parent step {self.instance_id}/{p.step_id} ended: {why}"
        if st.loop is not None:
            for index in sorted(st.loop.running):
                child = iteration_id(self.instance_id, p.step_id, st.attempt, index)
                self.send(StopInstance(child, reason))
            return
        step = self.s.workflow.dag.steps[p.step_id]
        # A user failure of a subworkflow step is its child's own report: it has ended.
        user_failure = isinstance(p, StepAttemptFailed) and p.kind is FailureKind.USER
        if isinstance(step, SubworkflowStep) and step.sync and not user_failure:
            self.send(StopInstance(child_id(self.instance_id, p.step_id, st.attempt), reason))

    def send(self, command: Command) -> None:
        """Decided with the events: the engine delivers it exactly once, in their transaction."""
        self.sent.append(command)


def live(d: Draft) -> bool:
    """Running or paused: reports, timers, stops and step actions apply."""
    return d.state is not None and d.state.status.is_live


def current(d: Draft, step_id: str, attempt: int, *statuses: StepStatus) -> bool:
    """True when the report is about the step's newest attempt, in one of `statuses`."""
    if not live(d):
        return False
    st = d.s.steps.get(step_id)
    return st is not None and st.attempt == attempt and st.status in statuses


# --- rules shared by several commands -------------------------------------------------


def create_attempt(d: Draft, step_id: str) -> None:
    wf = d.s.workflow
    step = wf.dag.steps[step_id]
    attempt = d.s.steps[step_id].attempt + 1
    if not step.params or step.type in LOOP_STEP_TYPES:
        # The run's params, as recorded: nothing to merge (a loop's are per iteration).
        params = d.s.params
    elif not wf.dag.dynamic_params[step_id]:
        merged = json.loads(d.s.params)
        merged.update({k: p.value for k, p in step.params.items()})
        params = dumps(merged)
    else:
        try:
            values = evaluate_params(
                step.params,
                wf.dag.param_order[step_id],
                json.loads(d.s.params),
                run_builtins(d.s),
                steps_view(d.s, step_id),
            )
        except ExpressionError as err:
            d.emit(StepEvaluationFailed(step_id, d.s.run, str(err)))
            return
        params = dumps(values)
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
    if isinstance(step, SleepStep):
        wake_at = d.now + round(step.duration * MICROS)
        d.emit(
            StepAttemptStarted(step_id, attempt, ENGINE_WORKER, timeout_at=None, wake_at=wake_at)
        )
    elif isinstance(step, SubworkflowStep):
        _start_child(d, step, attempt, params)
    elif isinstance(step, ForeachStep | WhileStep):
        from services.domain.loops import start_loop  # loops are built from this module's rules

        start_loop(d, step, attempt)


def child_id(instance_id: str, step_id: str, attempt: int) -> str:
    """A child instance's id: routed with its parent (ROUTE_SEPARATOR), unique per attempt."""
    return f"{instance_id}{ROUTE_SEPARATOR}{step_id}{ROUTE_SEPARATOR}{attempt}"


def iteration_id(instance_id: str, step_id: str, attempt: int, index: int) -> str:
    """A loop iteration's instance id: routed with its parent, unique per attempt and index."""
    return f"{child_id(instance_id, step_id, attempt)}{ROUTE_SEPARATOR}{index}"


def _start_child(d: Draft, step: SubworkflowStep, attempt: int, params: str) -> None:
    """The child's workflow resolves the version and starts it (StartChild). A sync step runs
    until the child reports its end; an async one succeeds once the child is asked for."""
    child = child_id(d.s.instance_id, step.id, attempt)
    values = json.loads(params)
    d.send(
        StartChild(
            workflow_id=step.workflow,
            instance_id=child,
            version=str(step.version),
            params=dumps({k: values[k] for k in step.params if k in values}),
            initiator=f"subworkflow:{d.s.instance_id}/{step.id}",
            parent_instance_id=d.s.instance_id,
            parent_step_id=step.id,
            parent_attempt=attempt,
            depth=d.s.depth + 1,
            sync=step.sync,
        )
    )
    if step.sync:
        timeout_at = None if step.timeout is None else d.now + round(step.timeout * MICROS)
        started = StepAttemptStarted(step.id, attempt, ENGINE_WORKER, timeout_at, wake_at=None)
        d.emit(started)
    else:
        from services.domain.step_signals import succeed  # built from this module's rules

        succeed(d, step.id, attempt, dumps({"instance_id": child}))


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


def fail_attempt(
    d: Draft, step_id: str, kind: FailureKind, message: str, output_tail: str = ""
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


def stop_active(d: Draft, status: StepStatus, reason: str) -> None:
    for sid in d.s.workflow.dag.order:
        st = d.s.steps[sid]
        if st.status.is_active:
            d.emit(StepStopped(step_id=sid, attempt=st.attempt, status=status, reason=reason))


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
    from services.domain.loops import run_loop  # loops are built from this module's rules

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
                from services.domain.step_signals import wait_for_signals  # see _run_loops

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


# --- one handler per command ------------------------------------------------------------


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
