"""A step's next attempt: its params evaluated, then what its kind does first."""

from __future__ import annotations

import json

from services.domain.instance.draft import ENGINE_WORKER, Draft
from services.domain.instance.kinds.loops import start_loop
from services.domain.instance.kinds.subworkflows import start_child
from services.domain.instance.views import run_builtins, steps_view
from services.domain.kernel.clock import MICROS
from services.domain.kernel.documents import dumps
from services.domain.kernel.errors import ExpressionError
from services.domain.language.evaluation import evaluate_params
from services.domain.language.steps import (
    ENGINE_STEP_TYPES,
    LOOP_STEP_TYPES,
    ForeachStep,
    SleepStep,
    SubworkflowStep,
    WhileStep,
)
from services.domain.protocol.events import (
    StepAttemptCreated,
    StepAttemptStarted,
    StepEvaluationFailed,
)


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
        start_child(d, step, attempt, params)
    elif isinstance(step, ForeachStep | WhileStep):
        start_loop(d, step, attempt)
