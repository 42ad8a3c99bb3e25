"""The actions on one step of an instance, one table from the action to its command: one
route checks the instance's and the step's status and publishes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Path

from services.api import problems
from services.api.common import publish
from services.api.deps import Codec, Pool, Producer
from services.api.dto import ActionReason, StepActionAccepted
from services.api.inputs import InstanceId, StepId
from services.api.routes.instances.actions import ACTION_RESPONSES
from services.api.routes.instances.lookups import check_restartable_from, instance_row, step_row
from services.domain.kernel.statuses import STEP_ACTIONS, InstanceStatus, RestartMode, StepStatus
from services.domain.protocol.commands import (
    BypassSignals,
    Command,
    PauseStep,
    RestartInstance,
    RestartStep,
    ResumeStep,
    SkipStep,
    StopStep,
)

# (instance id, step id, reason) -> the command of the action in a live run, in the order
# the route's documentation names them. `restart` of a step of an ended instance is a new run
# from that step instead (below).
STEP_COMMANDS: dict[str, Callable[[str, str, str], Command]] = {
    "skip": lambda i, s, reason: SkipStep(instance_id=i, step_id=s, reason=reason),
    "stop": lambda i, s, reason: StopStep(instance_id=i, step_id=s, reason=reason),
    "restart": lambda i, s, _: RestartStep(instance_id=i, step_id=s),
    "pause": lambda i, s, _: PauseStep(instance_id=i, step_id=s),
    "resume": lambda i, s, _: ResumeStep(instance_id=i, step_id=s),
    "bypass-signals": lambda i, s, reason: BypassSignals(instance_id=i, step_id=s, reason=reason),
}
_ACTION_PATTERN = "^(" + "|".join(STEP_COMMANDS) + ")$"

router = APIRouter(prefix="/instances", tags=["instances"])


@router.post(
    "/{instance_id}/steps/{step_id}/actions/{action}",
    status_code=202,
    responses=ACTION_RESPONSES,
    summary="Skip, stop, restart, pause (breakpoint), resume or bypass the signals of a step",
)
async def step_action(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: InstanceId,
    step_id: StepId,
    action: Annotated[str, Path(pattern=_ACTION_PATTERN, max_length=max(map(len, STEP_COMMANDS)))],
    body: Annotated[ActionReason | None, Body()] = None,
) -> StepActionAccepted:
    """`skip`: the step ends SKIPPED and its successors run (a running attempt is stopped).
    `stop`: its active attempt is stopped and it ends STOPPED. `restart`: a failed or stopped
    step runs again — in the live run, or, when the instance has ended, as a new run from
    that step (FROM_STEP). `pause`: a breakpoint — the step pauses (PAUSED) before it
    starts. `resume`: clears it, and starts the step if it is paused there.
    `bypass-signals`: a step WAITING_FOR_SIGNALS starts without them."""
    row = await instance_row(pool, instance_id)
    step = await step_row(pool, instance_id, step_id)
    status = InstanceStatus(row["status"])
    command: Command
    if action == "restart" and status.is_terminal:
        await check_restartable_from(pool, instance_id, step_id)
        command = RestartInstance(
            instance_id=instance_id,
            mode=RestartMode.FROM_STEP,
            expected_run=row["run"],
            step_id=step_id,
        )
    else:
        if not status.is_live:
            raise problems.conflict(f"cannot {action} a step of an instance that is {status.value}")
        step_status = StepStatus(step["status"])
        if step_status not in STEP_ACTIONS[action.replace("-", "_")]:
            raise problems.conflict(f"cannot {action} step {step_id}: it is {step_status.value}")
        command = STEP_COMMANDS[action](instance_id, step_id, body.reason if body else "")
    command_id = await publish(producer, codec, command)
    return StepActionAccepted.model_validate(
        {"instance_id": instance_id, "step_id": step_id, "action": action, "command_id": command_id}
    )
