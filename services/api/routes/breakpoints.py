"""Breakpoints set on a workflow: every step with that id, in every instance of the
workflow (running now or started later, loop iterations included), pauses before it starts."""

from __future__ import annotations

from fastapi import APIRouter

from services.api import problems
from services.api.common import canonical_json, json_value, publish
from services.api.deps import Codec, Pool, Producer
from services.api.dto import BreakpointAccepted
from services.api.inputs import StepId, WorkflowId
from services.domain.language.workflow import any_version_has_step
from services.domain.protocol.commands import SetWorkflowBreakpoint

router = APIRouter(prefix="/workflows", tags=["workflows"])


async def _check_step(pool: Pool, workflow_id: str, step_id: str) -> None:
    """404 unless some version of the workflow has the step (at any depth of loops): an
    instance of an older version may still run it."""
    rows = await pool.fetch(
        "SELECT definition FROM workflow_versions WHERE workflow_id = $1", workflow_id
    )
    if not rows:
        raise problems.not_found(f"workflow {workflow_id!r}")
    definitions = (canonical_json(json_value(row["definition"])) for row in rows)
    if not any_version_has_step(definitions, step_id):
        raise problems.not_found(f"a step {step_id!r} in any version of workflow {workflow_id!r}")


async def _set(
    pool: Pool, producer: Producer, codec: Codec, workflow_id: str, step_id: str, enabled: bool
) -> BreakpointAccepted:
    await _check_step(pool, workflow_id, step_id)
    command = SetWorkflowBreakpoint(workflow_id=workflow_id, step_id=step_id, enabled=enabled)
    command_id = await publish(producer, codec, command)
    return BreakpointAccepted(
        workflow_id=workflow_id, step_id=step_id, enabled=enabled, command_id=command_id
    )


@router.put(
    "/{workflow_id}/breakpoints/{step_id}",
    status_code=202,
    responses=problems.responses(404),
    summary="Set a breakpoint on a step of every instance of the workflow",
)
async def set_breakpoint(
    pool: Pool, producer: Producer, codec: Codec, workflow_id: WorkflowId, step_id: StepId
) -> BreakpointAccepted:
    """Every step `step_id` (at any depth of loops) of the workflow's instances pauses
    (`PAUSED`) before it starts, until it is resumed (`…/steps/{step_id}/actions/resume` on
    the instance) or the breakpoint is cleared. It reaches the instances running now (and
    their loop iterations), and every instance started from now on, by any trigger or as a
    subworkflow. Setting it again changes nothing."""
    return await _set(pool, producer, codec, workflow_id, step_id, True)


@router.delete(
    "/{workflow_id}/breakpoints/{step_id}",
    status_code=202,
    responses=problems.responses(404),
    summary="Clear a breakpoint set on the workflow, releasing the steps paused there",
)
async def clear_breakpoint(
    pool: Pool, producer: Producer, codec: Codec, workflow_id: WorkflowId, step_id: StepId
) -> BreakpointAccepted:
    """Instances started from now on do not pause there; in the running ones it is cleared and
    the steps paused at it start, unless the instance's own breakpoint (its definition's, or
    one set on it by `pause`) holds them. Clearing a breakpoint that is not set changes
    nothing."""
    return await _set(pool, producer, codec, workflow_id, step_id, False)
