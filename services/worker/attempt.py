"""Running one attempt of a step: its runtime, its start and heartbeats while it runs, and
the result command its outcome becomes."""

from __future__ import annotations

import asyncio
import json
import logging

from services.domain.kernel.documents import json_may_hold_unstorable
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.commands import (
    Command,
    CommandEnvelope,
    ReportAttemptFailed,
    ReportAttemptSucceeded,
)
from services.domain.protocol.tasks import Task
from services.worker.cancellations import Cancellations
from services.worker.reports import Reporter
from services.worker.runtimes.contract import (
    StepOutcome,
    StepRuntime,
    StepSuccess,
    failure,
    reportable,
)

log = logging.getLogger(__name__)

MAX_OUTPUTS_BYTES = 256 * 1024
# How long a step runs before its start is reported on its own (see run_attempt).
REPORT_STARTED_AFTER_SECONDS = 0.005


async def run_attempt(
    runtime: StepRuntime,
    task: Task,
    started: CommandEnvelope,
    *,
    reporter: Reporter,
    cancellations: Cancellations,
    heartbeat_seconds: float,
    worker_id: str,
) -> tuple[StepOutcome, bool] | None:
    """The step's outcome and whether `started` was sent, or None when the engine
    cancelled it (see `Cancellations`).

    A step that ends within REPORT_STARTED_AFTER_SECONDS reports its start together with
    its result: one produce request, one engine transaction, instead of a Started
    transaction the result would queue behind. Longer steps report their start then, and a
    heartbeat every `heartbeat_seconds` while they run. If this is cancelled (the worker
    stops), the step is cancelled too and its processes killed."""
    key = (task.instance_id, task.step_id, task.attempt)
    if key in cancellations:  # cancelled before it started
        return None
    step = asyncio.ensure_future(runtime.run(task))
    cancellations.running(key, step)
    started_sent = False
    try:
        done, _ = await asyncio.wait((step,), timeout=REPORT_STARTED_AFTER_SECONDS)
        if not done:
            await reporter.send(started)
            started_sent = True
        while not done:
            done, _ = await asyncio.wait((step,), timeout=heartbeat_seconds)
            if not done:
                await reporter.heartbeat(task)
    finally:
        cancellations.ended(key)
        if not step.done():
            step.cancel()  # the runtime kills the step's processes
            await asyncio.wait((step,))
    if step.cancelled() and key in cancellations:
        return None
    try:
        return step.result(), started_sent
    except Exception as err:
        log.exception("runtime %s failed on task %s", type(runtime).__name__, task.task_id)
        # The report is kept in baton.events for ever and served by the API, and an
        # exception's message or traceback can hold what the runtime was handed (a DSN,
        # a header): the event names the type and the worker; its log has the rest.
        return (
            failure(
                FailureKind.PLATFORM,
                f"worker error: {type(err).__name__} (its traceback is in the log of"
                f" worker {worker_id})",
            ),
            started_sent,
        )


def report_for(task: Task, outcome: StepOutcome) -> Command:
    """The result command of the attempt: its outputs if they can travel and be stored
    (JSON, at most MAX_OUTPUTS_BYTES, nothing PostgreSQL's text cannot hold), else a USER
    failure saying why; a failure bounded and storable (`failure`)."""
    if isinstance(outcome, StepSuccess):
        try:
            outputs = _outputs_json(outcome)
        except (TypeError, ValueError) as err:
            outcome = failure(FailureKind.USER, f"outputs are not valid JSON: {err}")
        else:
            if len(outputs.encode()) > MAX_OUTPUTS_BYTES:
                # They travel in a command and an event: bounded, like every record.
                outcome = failure(
                    FailureKind.USER,
                    f"outputs are {len(outputs.encode())} bytes; at most {MAX_OUTPUTS_BYTES}",
                )
            elif json_may_hold_unstorable(outputs):
                # Found in the JSON by a substring search (2 µs); `reportable` walks the
                # outputs (2 ms for 8,000 values) only to name the path.
                outcome = reportable(outcome)
    if isinstance(outcome, StepSuccess):
        return ReportAttemptSucceeded(task.instance_id, task.step_id, task.attempt, outputs)
    bounded = failure(outcome.kind, outcome.message, outcome.output_tail)  # storable too
    return ReportAttemptFailed(
        task.instance_id,
        task.step_id,
        task.attempt,
        bounded.kind,
        bounded.message,
        bounded.output_tail,
    )


def _outputs_json(outcome: StepSuccess) -> str:
    return json.dumps(outcome.outputs, sort_keys=True, separators=(",", ":"), allow_nan=False)
