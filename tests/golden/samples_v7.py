"""Golden samples of schema version 7: breakpoints set on a workflow (see samples.py)."""

from __future__ import annotations

from services.domain.protocol.commands import (
    ApplyWorkflowBreakpoints,
    CommandEnvelope,
    SetWorkflowBreakpoint,
    StartInstance,
)
from services.domain.protocol.events import BreakpointSet, Event, WorkflowBreakpointSet
from tests.golden.common import DEFINITION, INSTANCE, PARAMS, WORKFLOW, command, event

EVENTS_V7: tuple[Event, ...] = (
    event(6, WorkflowBreakpointSet(step_id="load", enabled=True), instance=False),
)

COMMANDS_V7: tuple[CommandEnvelope, ...] = (
    command(50, SetWorkflowBreakpoint(workflow_id=WORKFLOW, step_id="load", enabled=True)),
    command(52, ApplyWorkflowBreakpoints(instance_id=INSTANCE, breakpoints=("extract", "load"))),
)

# Round-tripped by the codec tests (their types' golden bytes are older samples).
EVENT_VARIANTS_V7: tuple[Event, ...] = (
    event(26, BreakpointSet(step_id="load", enabled=True, workflow=True)),
)
COMMAND_VARIANTS_V7: tuple[CommandEnvelope, ...] = (
    command(51, SetWorkflowBreakpoint(workflow_id=WORKFLOW, step_id="load", enabled=False)),
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
