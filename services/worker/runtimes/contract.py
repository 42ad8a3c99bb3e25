"""What every step runtime promises, and the outcome it reports.

A runtime turns a ``Task`` into an outcome (``StepSuccess`` or ``StepFailure``); it never talks
to Kafka. Failures say who failed: the step's own code (USER), Baton (PLATFORM), or the clock
(TIMEOUT). This module is the bottom of the package: every runtime imports it, it imports none
of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.domain.kernel.documents import unstorable_path
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.child_process import OUTPUT_TAIL_CHARS

MESSAGE_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class StepSuccess:
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepFailure:
    kind: FailureKind
    message: str
    output_tail: str = ""


StepOutcome = StepSuccess | StepFailure


class StepRuntime(Protocol):
    """Runs one task of a step type and returns its outcome.

    Delivery contract: **at-least-once**. The same task (same instance, step and attempt) may
    be run more than once — most often when a worker crashes or is killed after starting it
    and before its offset was committed, so the task is redelivered to another worker. The
    engine treats reports as idempotent by (instance, step, attempt): a duplicate or late
    report changes nothing. Runtimes, and the steps they run, must therefore be idempotent or
    tolerate being re-run.

    ``run`` returns an outcome for every failure of the step itself (it raises only for bugs
    in Baton, which the worker reports as PLATFORM failures). If cancelled (worker shutdown
    past its grace period) it must stop the step's processes before re-raising; the attempt
    is then not reported and the engine's heartbeat expiry retries it.
    """

    async def run(self, task: Task) -> StepOutcome: ...


def failure(kind: FailureKind, message: str, output_tail: str = "") -> StepFailure:
    """A failure with its message and output tail bounded to what a report may carry, and
    storable: PostgreSQL's text cannot hold a NUL character (a step printed one, an http
    body or an error held one), so each becomes U+FFFD, the replacement character, as the
    UTF-8 decoding of the output already marks what it cannot read."""
    message, output_tail = (t.replace("\x00", "\ufffd") for t in (message, output_tail))
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return StepFailure(kind, message, output_tail[-OUTPUT_TAIL_CHARS:])


def reportable(outcome: StepOutcome) -> StepOutcome:
    """The outcome as the worker may report it, whatever the runtime: outputs holding a NUL
    character or a lone surrogate in any string or key (a shell step's `$BATON_OUTPUTS`, a python step's return
    value, an http response body, a sql row) are a USER failure naming the path — they are
    the step's data, and no event may carry what the read models cannot hold; a failure is
    bounded and made storable by `failure`."""
    if isinstance(outcome, StepFailure):
        return failure(outcome.kind, outcome.message, outcome.output_tail)
    found = unstorable_path(dict(outcome.outputs), ("outputs",))
    if found is not None:
        return failure(FailureKind.USER, f"{found[0]}: {found[1]}")
    return outcome
