"""The unit of work of one instance decision: each decided event is folded at once, so later
rules see the state it leads to."""

from __future__ import annotations

from collections.abc import Callable

from services.domain.instance.evolve import evolve_instance
from services.domain.instance.state import InstanceState
from services.domain.kernel.statuses import StepStatus
from services.domain.protocol.aggregate import Draft as AggregateDraft
from services.domain.protocol.events import (
    Event,
    EventPayload,
    StepAttemptFailed,
    StepEvaluationFailed,
    StepSkipped,
    StepStopped,
)

# The worker id of attempts the engine runs itself (sleep, subworkflow): no heartbeats.
ENGINE_WORKER = "engine"

AttemptEnd = StepStopped | StepSkipped | StepAttemptFailed | StepEvaluationFailed
ENDS_ATTEMPT = (StepStopped, StepSkipped, StepAttemptFailed, StepEvaluationFailed)


class Draft(AggregateDraft[InstanceState]):
    """An instance's draft. An event that ends an attempt other than by its children's
    reports first runs `on_attempt_end` (cancellation.py: the children still running are
    stopped), before the fold, so it sees the children as they run now."""

    def __init__(
        self,
        state: InstanceState | None,
        instance_id: str,
        now: int,
        caused_at: int | None,
        on_attempt_end: Callable[[Draft, AttemptEnd], None] | None = None,
    ) -> None:
        super().__init__(state, instance_id, now, caused_at)
        self.instance_id = instance_id
        self.on_attempt_end = on_attempt_end
        # The workflow of an instance that does not exist yet: given by its first event.
        self.workflow_id: str | None = None

    def emit(self, payload: EventPayload, workflow_id: str | None = None) -> InstanceState:
        if workflow_id is not None:
            self.workflow_id = workflow_id
        if self.on_attempt_end is not None and isinstance(payload, ENDS_ATTEMPT):
            self.on_attempt_end(self, payload)
        return super().emit(payload)

    def envelope(self, payload: EventPayload, seq: int) -> Event:
        return Event(
            event_id=f"{self.instance_id}:{seq}",
            instance_id=self.instance_id,
            workflow_id=self.workflow_id or self.s.workflow_id,
            seq=seq,
            occurred_at=self.now,
            payload=payload,
            caused_at=self.caused_at,
        )

    def evolve(self, state: InstanceState | None, event: Event) -> InstanceState:
        return evolve_instance(state, event)


def live(d: Draft) -> bool:
    """Running or paused: reports, timers, stops and step actions apply."""
    return d.state is not None and d.state.status.is_live


def current(d: Draft, step_id: str, attempt: int, *statuses: StepStatus) -> bool:
    """True when the report is about the step's newest attempt, in one of `statuses`."""
    if not live(d):
        return False
    st = d.s.steps.get(step_id)
    return st is not None and st.attempt == attempt and st.status in statuses
