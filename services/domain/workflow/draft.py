"""The unit of work of one workflow decision."""

from __future__ import annotations

from services.domain.protocol.aggregate import Draft
from services.domain.protocol.events import Event, EventPayload
from services.domain.workflow.evolve import evolve_workflow
from services.domain.workflow.state import WorkflowState


class WorkflowDraft(Draft[WorkflowState]):
    def __init__(
        self, state: WorkflowState | None, workflow_id: str, now: int, caused_at: int | None
    ) -> None:
        super().__init__(state, workflow_id, now, caused_at)
        self.workflow_id = workflow_id

    def envelope(self, payload: EventPayload, seq: int) -> Event:
        return Event(
            event_id=f"{self.workflow_id}:{seq}",
            instance_id=None,
            workflow_id=self.workflow_id,
            seq=seq,
            occurred_at=self.now,
            payload=payload,
            caused_at=self.caused_at,
        )

    def evolve(self, state: WorkflowState | None, event: Event) -> WorkflowState:
        return evolve_workflow(state, event)
