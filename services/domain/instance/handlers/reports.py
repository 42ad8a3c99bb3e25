"""Reports about attempts: workers', children's, signals', and the silence of a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.instance.attempts import fail_attempt, succeed
from services.domain.instance.draft import Draft, current
from services.domain.instance.kinds.loops import iteration_ended
from services.domain.instance.kinds.signal_waits import signal_delivered
from services.domain.instance.scheduler import advance
from services.domain.kernel.clock import MICROS
from services.domain.kernel.documents import (
    NUL_MESSAGE,
    json_may_hold_unstorable,
    load_json,
)
from services.domain.kernel.errors import DefinitionError
from services.domain.kernel.statuses import (
    FailureKind,
    InstanceStatus,
    StepStatus,
)
from services.domain.language.steps import ENGINE_STEP_TYPES
from services.domain.protocol.commands import (
    DeliverSignal,
    ExpireHeartbeat,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    ReportChildEnded,
)
from services.domain.protocol.events import (
    StepAttemptStarted,
)


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


RULES: dict[type, Callable[[Draft, Any], None]] = {
    ReportAttemptStarted: _report_started,
    ReportAttemptSucceeded: _report_succeeded,
    ReportAttemptFailed: _report_failed,
    ReportAttemptHeartbeat: _heartbeat,
    ReportChildEnded: _report_child_ended,
    ExpireHeartbeat: _expire_heartbeat,
    DeliverSignal: _deliver_signal,
}
