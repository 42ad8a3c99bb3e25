"""FireTimers: the deadlines the instance recorded (its timeout, sleeps, step timeouts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.instance.attempts import fail_attempt, stop_active, succeed
from services.domain.instance.draft import Draft, live
from services.domain.instance.scheduler import advance
from services.domain.kernel.statuses import (
    FailureKind,
    StepStatus,
)
from services.domain.protocol.commands import (
    FireTimers,
)
from services.domain.protocol.events import (
    InstanceTimedOut,
)


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


RULES: dict[type, Callable[[Draft, Any], None]] = {
    FireTimers: _fire_timers,
}
