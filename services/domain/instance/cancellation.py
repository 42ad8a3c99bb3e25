"""Cancellation propagates down: a step attempt that ends other than by its children's
reports (stopped, skipped, timed out, failed) stops the children still running: a sync
subworkflow's child instance, a loop's running iterations. A step that ends while waiting for
signals withdraws its wait."""

from __future__ import annotations

from services.domain.instance.draft import AttemptEnd, Draft
from services.domain.instance.kinds.signal_waits import cancel_wait
from services.domain.kernel.statuses import FailureKind, StepStatus
from services.domain.language.steps import SubworkflowStep
from services.domain.protocol.commands import StopInstance
from services.domain.protocol.events import StepAttemptFailed
from services.domain.protocol.routing import child_id, iteration_id


def cancel_children(d: Draft, p: AttemptEnd) -> None:
    st = d.s.steps[p.step_id]
    if st.status is StepStatus.WAITING_FOR_SIGNALS:
        cancel_wait(d, p.step_id)
        return
    if st.status not in (StepStatus.STARTING, StepStatus.RUNNING):
        return
    why = getattr(p, "reason", None) or getattr(p, "message", "")
    reason = f"parent step {d.instance_id}/{p.step_id} ended: {why}"
    if st.loop is not None:
        for index in sorted(st.loop.running):
            child = iteration_id(d.instance_id, p.step_id, st.attempt, index)
            d.send(StopInstance(child, reason))
        return
    step = d.s.workflow.dag.steps[p.step_id]
    # A user failure of a subworkflow step is its child's own report: it has ended.
    user_failure = isinstance(p, StepAttemptFailed) and p.kind is FailureKind.USER
    if isinstance(step, SubworkflowStep) and step.sync and not user_failure:
        d.send(StopInstance(child_id(d.instance_id, p.step_id, st.attempt), reason))
