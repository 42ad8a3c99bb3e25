"""Golden samples of schema version 7: breakpoints set on a workflow (see samples.py)."""

from __future__ import annotations

from services.domain.commands import (
    CommandEnvelope,
    ResumeStep,
    SetWorkflowBreakpoint,
    StartInstance,
)
from services.domain.events import Event, WorkflowBreakpointSet
from tests.golden.common import DEFINITION, INSTANCE, PARAMS, WORKFLOW, command, event

EVENTS_V7: tuple[Event, ...] = (
    event(6, WorkflowBreakpointSet(step_id="load", enabled=True), instance=False),
)

COMMANDS_V7: tuple[CommandEnvelope, ...] = (
    command(50, SetWorkflowBreakpoint(workflow_id=WORKFLOW, step_id="load", enabled=True)),
)

# Round-tripped by the codec tests (their types' golden bytes are older samples).
COMMAND_VARIANTS_V7: tuple[CommandEnvelope, ...] = (
    command(51, SetWorkflowBreakpoint(workflow_id=WORKFLOW, step_id="load", enabled=False)),
    command(52, ResumeStep(instance_id=INSTANCE, step_id="load", clear=True)),
    command(
        53,
        StartInstance(
            instance_id=f"{WORKFLOW}~5f0c9e2b7d4a41a8b1e3c6d9f2a7b4e1",
            workflow_id=WORKFLOW,
            version=3,
            definition=DEFINITION,
            params=PARAMS,
            initiator="cron:0 6 * * *",
            admitted=True,
            breakpoints=("extract", "load"),
        ),
    ),
)
