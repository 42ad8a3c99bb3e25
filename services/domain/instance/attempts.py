"""How an attempt ends: success (with its signal outputs), failure and its retry, stop."""

from __future__ import annotations

from services.domain.instance.draft import Draft
from services.domain.instance.views import scope
from services.domain.kernel.clock import MICROS
from services.domain.kernel.documents import dumps
from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import FailureKind, FailureMode, StepStatus
from services.domain.language.evaluation import (
    evaluate_param,
)
from services.domain.language.steps import (
    ExponentialBackoff,
    RetryPolicy,
)
from services.domain.protocol.commands import (
    SendSignal,
)
from services.domain.protocol.events import (
    StepAttemptFailed,
    StepAttemptSucceeded,
    StepStopped,
)


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


def succeed(d: Draft, step_id: str, attempt: int, outputs: str) -> None:
    """The attempt succeeded: record it and send the step's signal outputs. Outputs whose
    params cannot be evaluated fail the attempt instead (a user failure, with the reason)."""
    step = d.s.workflow.dag.steps[step_id]
    signals: list[SendSignal] = []
    if step.signal_outputs:
        try:
            ctx = scope(d.s, step_id, outputs)
            for i, out in enumerate(step.signal_outputs):
                params = {
                    name: evaluate_param(f"{out.name}.params.{name}", p, ctx)
                    for name, p in sorted(out.params.items())
                }
                signals.append(
                    SendSignal(
                        signal_name=out.name,
                        # Derived, so a decision replayed never sends a second signal.
                        request_id=f"{d.instance_id}/{step_id}/{attempt}/{i}",
                        params=dumps(params),
                        payload=dumps(out.payload),
                        sender=f"step:{d.instance_id}/{step_id}",
                    )
                )
        except ExpressionError as err:
            fail_attempt(d, step_id, FailureKind.USER, f"signal outputs: {err}")
            return
    d.emit(StepAttemptSucceeded(step_id, attempt, outputs))
    for signal in signals:
        d.send(signal)
