"""Loop steps: foreach and while. Each iteration runs the loop's inline DAG as a child
instance (as Maestro does), routed with its parent, so launching one is a command decided in
the same transaction. The parent's step holds only the loop's progress (`LoopState`): which
iterations run, how many ended in each status, and their outputs while they fit. Per
iteration the parent records two events at most (started, in batches; ended), whatever the
size of its body.

- foreach: the items are evaluated once (`LoopStarted` records them); up to `concurrency`
  iterations run at once. A failed iteration stops new ones from starting (FAIL_AFTER_RUNNING),
  ends the loop at once (FAIL_IMMEDIATELY), or is counted and the rest go on (IGNORE_FAILURE).
- while: one iteration at a time; the condition is evaluated before each, over `iteration.index`
  and the last iteration's `iteration.outputs`, and its verdict is recorded by what follows (an
  iteration started, or the step succeeded). Still true after `max_iterations`: it fails.

The loop step's own params are evaluated per iteration (they may read `iteration`), over the run's
params; the iteration starts with them, as given (no start-time evaluation in the child).
"""

from __future__ import annotations

import json
from typing import Any

from services.domain.instance.attempts import fail_attempt, succeed
from services.domain.instance.breakpoints import iteration_breakpoints
from services.domain.instance.draft import ENGINE_WORKER, Draft, current
from services.domain.instance.state import LoopState, Results
from services.domain.instance.views import run_builtins, steps_view
from services.domain.kernel.clock import MICROS
from services.domain.kernel.documents import dumps
from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import FailureKind, FailureMode, InstanceStatus, StepStatus
from services.domain.language.evaluation import (
    context,
    evaluate_condition,
    evaluate_params,
    parsed_outputs,
)
from services.domain.language.expressions import compile_expression
from services.domain.language.params import describe
from services.domain.language.steps import (
    MAX_ITERATIONS,
    MAX_SUBWORKFLOW_DEPTH,
    ForeachStep,
    LoopStep,
    WhileStep,
)
from services.domain.protocol.commands import ReportChildEnded, StartInstance
from services.domain.protocol.events import (
    LoopIterationEnded,
    LoopIterationsStarted,
    LoopStarted,
    StepAttemptStarted,
    StepEvaluationFailed,
)
from services.domain.protocol.routing import iteration_id

# The items a foreach records in one event, encoded: well under the broker's message size.
MAX_ITEMS_BYTES = 512_000


def start_loop(d: Draft, step: LoopStep, attempt: int) -> None:
    """The loop's attempt runs in the engine: it starts now, and its first iterations too."""
    timeout_at = None if step.timeout is None else d.now + round(step.timeout * MICROS)
    d.emit(StepAttemptStarted(step.id, attempt, ENGINE_WORKER, timeout_at, wake_at=None))
    if d.s.depth + 1 > MAX_SUBWORKFLOW_DEPTH:
        msg = f"loops and subworkflows nest at most {MAX_SUBWORKFLOW_DEPTH} deep"
        fail_attempt(d, step.id, FailureKind.USER, msg)
        return
    if isinstance(step, ForeachStep):
        try:
            items = _items(d, step)
        except ExpressionError as err:
            d.emit(StepEvaluationFailed(step.id, d.s.run, f"items of {step.id}: {err}"))
            return
        d.emit(LoopStarted(step.id, attempt, items))
    else:
        d.emit(LoopStarted(step.id, attempt, None))
    run_loop(d, step)


def _context(d: Draft, step_id: str, loop: dict[str, Any] | None) -> dict[str, Any]:
    base = run_builtins(d.s)
    if loop is not None:
        base["iteration"] = loop
    return context(parsed_outputs(d.s.params), base, steps_view(d.s, step_id))


def _items(d: Draft, step: ForeachStep) -> str:
    """The items, evaluated and encoded (JSON list)."""
    ctx = _context(d, step.id, None)
    if step.range is not None:
        bounds = []
        for name in ("start", "end", "step"):
            raw = getattr(step.range, name)
            value = compile_expression(raw).evaluate(ctx) if isinstance(raw, str) else raw
            if isinstance(value, bool) or not isinstance(value, int):
                raise ExpressionError(f"range.{name} must be a long, got {describe(value)}")
            bounds.append(value)
        if bounds[2] == 0:
            raise ExpressionError("range.step may not be 0")
        span = range(*bounds)
        if len(span) > MAX_ITERATIONS:
            raise ExpressionError(f"{len(span)} iterations; at most {MAX_ITERATIONS}")
        return dumps(list(span))
    items = step.items
    if isinstance(items, str):
        items = compile_expression(items).evaluate(ctx)
    if not isinstance(items, list):
        raise ExpressionError(f"items must be a list, got {describe(items)}")
    if len(items) > MAX_ITERATIONS:
        raise ExpressionError(f"{len(items)} items; at most {MAX_ITERATIONS}")
    try:
        text = dumps(items)
    except (TypeError, ValueError) as err:
        raise ExpressionError(f"items must be JSON values: {err}") from None
    if len(text) > MAX_ITEMS_BYTES:
        raise ExpressionError(f"the items are {len(text)} bytes encoded; at most {MAX_ITEMS_BYTES}")
    return text


def run_loop(d: Draft, step: LoopStep) -> None:
    """Start what may start; end the attempt when nothing runs and nothing more will."""
    st = d.s.steps[step.id]
    loop = st.loop
    if st.status is not StepStatus.RUNNING or loop is None:
        return
    stopping = loop.failed > 0 and step.failure_mode is not FailureMode.IGNORE_FAILURE
    if stopping and step.failure_mode is FailureMode.FAIL_IMMEDIATELY:
        _fail(d, step, loop)  # the running iterations are stopped as the attempt fails
        return
    if isinstance(step, ForeachStep):
        _run_foreach(d, step, loop, stopping)
    else:
        _run_while(d, step, loop, stopping)


def _run_foreach(d: Draft, step: ForeachStep, loop: LoopState, stopping: bool) -> None:
    assert loop.items is not None
    total = len(loop.items)
    if d.s.status is InstanceStatus.IN_PROGRESS and not stopping:
        room = min(step.concurrency - len(loop.running), total - loop.started)
        if room > 0:
            first = loop.started
            views = [{"index": i, "item": loop.items[i]} for i in range(first, first + room)]
            _start_iterations(d, step, first, views)
            return
    if loop.running or (loop.started < total and not stopping):
        return  # waits for iterations to end (or for the instance to resume)
    if loop.failed:
        _fail(d, step, loop)
    else:
        _succeed(d, step, loop)


def _run_while(d: Draft, step: WhileStep, loop: LoopState, stopping: bool) -> None:
    if loop.running or d.s.status is not InstanceStatus.IN_PROGRESS:
        return
    if stopping:
        _fail(d, step, loop)
        return
    index = loop.started
    view = {"index": index, "outputs": parsed_outputs(loop.last_outputs)}
    try:
        holds = evaluate_condition(step.condition, _context(d, step.id, view))
    except ExpressionError as err:
        d.emit(StepEvaluationFailed(step.id, d.s.run, f"condition of {step.id}: {err}"))
        return
    if not holds:
        _succeed(d, step, loop)
    elif index >= step.max_iterations:
        msg = f"the condition still held after max_iterations ({step.max_iterations})"
        fail_attempt(d, step.id, FailureKind.USER, msg)
    else:
        _start_iterations(d, step, index, [view])


def _start_iterations(d: Draft, step: LoopStep, first: int, views: list[dict[str, Any]]) -> None:
    """Start iterations `first`, `first + 1` … (one per `loop` value in `views`): all of them,
    or, when the params of one cannot be evaluated, none (the step fails)."""
    attempt = d.s.steps[step.id].attempt
    run_params = parsed_outputs(d.s.params)
    base = run_builtins(d.s)
    steps = steps_view(d.s, step.id)
    order = d.s.workflow.dag.param_order[step.id]
    breakpoints = iteration_breakpoints(d.s, step.id)
    starts = []
    for index, view in enumerate(views, first):
        try:
            values = evaluate_params(
                step.params, order, run_params, {**base, "iteration": view}, steps
            )
            params, loop_value = dumps(values), dumps(view)
        except (ExpressionError, TypeError, ValueError) as err:
            d.emit(StepEvaluationFailed(step.id, d.s.run, f"iteration {index}: {err}"))
            return
        starts.append(
            StartInstance(
                instance_id=iteration_id(d.s.instance_id, step.id, attempt, index),
                workflow_id=d.s.workflow_id,
                version=d.s.version,
                definition=d.s.workflow.bodies[step.id],
                params=params,
                initiator=f"{step.type}:{d.s.instance_id}/{step.id}",
                parent_instance_id=d.s.instance_id,
                parent_step_id=step.id,
                parent_attempt=attempt,
                depth=d.s.depth + 1,
                loop=loop_value,
                breakpoints=breakpoints,
            )
        )
    for start in starts:
        d.send(start)
    d.emit(LoopIterationsStarted(step.id, attempt, first, len(starts)))


def _ordered(results: Results) -> list[Any]:
    out: list[tuple[int, str]] = []
    while results is not None:
        out.append(results[0])
        results = results[1]
    out.sort()
    return [json.loads(text) for _, text in out]


def _succeed(d: Draft, step: LoopStep, loop: LoopState) -> None:
    """The aggregated result: how many iterations ran, by status, and their outputs (in
    iteration order, while they fit; `results_truncated` says when some were left out)."""
    outputs: dict[str, Any] = {
        "iterations": loop.started,
        "statuses": dict(sorted(loop.counts.items())),
        "results": _ordered(loop.results),
        "results_truncated": loop.results_truncated,
    }
    if isinstance(step, WhileStep):
        outputs["last"] = parsed_outputs(loop.last_outputs)
    attempt = d.s.steps[step.id].attempt
    succeed(d, step.id, attempt, dumps(outputs))


def _fail(d: Draft, step: LoopStep, loop: LoopState) -> None:
    msg = f"{loop.failed} of {loop.started} iteration(s) did not succeed; {loop.first_failure}"
    fail_attempt(d, step.id, FailureKind.USER, msg)


def iteration_ended(d: Draft, c: ReportChildEnded) -> bool:
    """An iteration's instance ended: count it (`advance` then starts more, or ends the
    loop). False when the report no longer applies."""
    if c.iteration is None or not current(d, c.step_id, c.attempt, StepStatus.RUNNING):
        return False
    loop = d.s.steps[c.step_id].loop
    if loop is None or c.iteration not in loop.running:
        return False  # a duplicate, or an iteration restarted by hand after it had ended
    d.emit(LoopIterationEnded(c.step_id, c.attempt, c.iteration, c.status, c.outputs, c.reason))
    return True
