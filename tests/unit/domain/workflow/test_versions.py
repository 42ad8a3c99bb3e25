"""The workflow aggregate: versions and activation, in given-events / when-command form."""

from __future__ import annotations

import json

import pytest

from services.domain.kernel.errors import Rejected
from services.domain.protocol.commands import ActivateWorkflow, DeactivateWorkflow, PushWorkflow
from services.domain.protocol.events import Event, WorkflowActivated, WorkflowVersionCreated
from services.domain.workflow.decide import decide_workflow
from services.domain.workflow.evolve import evolve_workflow
from services.domain.workflow.state import WorkflowState

DEFINITION = json.dumps({"id": "wf", "steps": [{"id": "a", "type": "noop"}]})


class Workflow:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.state: WorkflowState | None = None

    def when(self, command: PushWorkflow | ActivateWorkflow | DeactivateWorkflow) -> list[str]:
        new = decide_workflow(self.state, command, 0).events
        for e in new:
            self.state = evolve_workflow(self.state, e)
        self.events += new
        return [e.type for e in new]


def test_a_push_creates_a_version_and_activates_it_unless_asked_not_to() -> None:
    w = Workflow()
    assert w.when(PushWorkflow("wf", DEFINITION)) == ["WorkflowVersionCreated", "WorkflowActivated"]
    assert w.when(PushWorkflow("wf", DEFINITION, activate=False)) == ["WorkflowVersionCreated"]
    assert w.state is not None
    assert (w.state.latest_version, w.state.active_version) == (2, 1)
    assert [e.seq for e in w.events] == [1, 2, 3]
    created = w.events[2].payload
    assert isinstance(created, WorkflowVersionCreated) and created.version == 2


def test_activation_names_a_version_and_deactivation_leaves_none() -> None:
    w = Workflow()
    w.when(PushWorkflow("wf", DEFINITION))
    w.when(PushWorkflow("wf", DEFINITION, activate=False))
    assert w.when(ActivateWorkflow("wf")) == ["WorkflowActivated"]  # the latest
    assert w.when(ActivateWorkflow("wf", 2)) == []  # already active
    assert w.when(ActivateWorkflow("wf", 1)) == ["WorkflowActivated"]
    activated = w.events[-1].payload
    assert isinstance(activated, WorkflowActivated) and activated.version == 1
    assert w.when(DeactivateWorkflow("wf")) == ["WorkflowDeactivated"]
    assert w.state is not None and w.state.active_version is None
    assert w.when(DeactivateWorkflow("wf")) == []


def test_activating_a_version_that_does_not_exist_is_refused() -> None:
    w = Workflow()
    with pytest.raises(Rejected, match="has no version"):
        w.when(ActivateWorkflow("wf"))
    w.when(PushWorkflow("wf", DEFINITION))
    with pytest.raises(Rejected, match="has versions 1 to 1, not 5"):
        w.when(ActivateWorkflow("wf", 5))
