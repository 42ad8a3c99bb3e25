"""The actions on an instance, one table: each row names the action, its summary, the body
it takes and how it makes its command. One endpoint body serves them all: it finds the
instance (404), checks its status against `INSTANCE_ACTIONS` (409 naming the status), and
publishes the command (202)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel

from services.api import problems
from services.api.common import canonical_json, publish
from services.api.deps import Codec, Pool, Producer
from services.api.dto import ActionAccepted, ActionReason, RestartBody
from services.api.inputs import InstanceId
from services.api.routes.instances.lookups import (
    check_restartable_from,
    instance_row,
    instance_workflow,
)
from services.domain.kernel.errors import DefinitionError
from services.domain.kernel.statuses import INSTANCE_ACTIONS, InstanceStatus, RestartMode
from services.domain.language.evaluation import check_overrides
from services.domain.protocol.commands import (
    Command,
    DequeueInstance,
    KillInstance,
    PauseInstance,
    RestartInstance,
    ResumeInstance,
    StopInstance,
    UnblockWorkflow,
)

ACTION_RESPONSES = problems.responses(404, 409)

# The command, from the instance's row once its status allows the action.
CommandOf = Callable[[Mapping[str, Any]], Command]
# What an action checks of its request (before the instance is read) and how it then makes
# its command: (pool, instance id, body or None) -> CommandOf.
Prepare = Callable[[Pool, str, Any], Awaitable[CommandOf]]


@dataclass(frozen=True)
class InstanceAction:
    name: str  # the path segment, the key of INSTANCE_ACTIONS, the answer's `action`
    route_name: str  # the endpoint's name: OpenAPI's operation id is made from it
    summary: str
    body: type[BaseModel] | None  # the optional body it accepts, None for none
    prepare: Prepare
    description: str = ""


def _reason(body: ActionReason | None) -> str:
    return body.reason if body else ""


def _queued_or(row: Mapping[str, Any], reason: str, command: Command) -> Command:
    """A CREATED instance waits in its workflow's queue: the workflow takes it out (and stops
    it instead if it was admitted meanwhile)."""
    if row["status"] != InstanceStatus.CREATED.value:
        return command
    return DequeueInstance(row["workflow_id"], row["instance_id"], reason or "stopped while queued")


async def _stop(_: Pool, instance_id: str, body: ActionReason | None) -> CommandOf:
    reason = _reason(body)
    return lambda row: _queued_or(row, reason, StopInstance(instance_id=instance_id, reason=reason))


async def _kill(_: Pool, instance_id: str, body: ActionReason | None) -> CommandOf:
    reason = _reason(body)
    return lambda row: _queued_or(row, reason, KillInstance(instance_id=instance_id, reason=reason))


async def _unblock(_: Pool, instance_id: str, __: None) -> CommandOf:
    return lambda row: UnblockWorkflow(row["workflow_id"], instance_id)


async def _pause(_: Pool, instance_id: str, body: ActionReason | None) -> CommandOf:
    command = PauseInstance(instance_id=instance_id, reason=_reason(body))
    return lambda _: command


async def _resume(_: Pool, instance_id: str, __: None) -> CommandOf:
    command = ResumeInstance(instance_id=instance_id)
    return lambda _: command


async def _restart(pool: Pool, instance_id: str, body: RestartBody | None) -> CommandOf:
    req = body or RestartBody()
    if (req.mode is RestartMode.FROM_STEP) != (req.step is not None):
        raise problems.invalid_input(
            [("step", "give `step` exactly when the mode is FROM_STEP")], "request"
        )
    if req.step is not None:
        await check_restartable_from(pool, instance_id, req.step)
    params = await _restart_params(pool, instance_id, req.params)

    def restart(row: Mapping[str, Any]) -> Command:
        if (
            req.mode is RestartMode.FROM_INCOMPLETE
            and InstanceStatus(row["status"]) is InstanceStatus.SUCCEEDED
        ):
            raise problems.conflict(
                "nothing to restart from incomplete steps: every step of this SUCCEEDED"
                " instance succeeded; restart with mode FROM_BEGINNING to run it again"
            )
        # The run this caller saw end: a retried request restarts it once, not twice.
        return RestartInstance(
            instance_id=instance_id,
            mode=req.mode,
            expected_run=row["run"],
            params=params,
            step_id=req.step,
        )

    return restart


async def _restart_params(pool: Pool, instance_id: str, overrides: dict[str, Any]) -> str:
    """The params a restart overrides, checked against the definition the instance runs."""
    if not overrides:
        return "{}"
    wf = await instance_workflow(pool, instance_id)
    try:
        check_overrides(wf, overrides, restart=True)
        return canonical_json(overrides)
    except DefinitionError as err:
        raise problems.from_definition_error(err, "params") from None
    except ValueError as err:  # NaN or infinity: not JSON
        raise problems.invalid_input([("params", str(err))], "params") from None


ACTIONS: tuple[InstanceAction, ...] = (
    InstanceAction(
        "stop",
        "stop_instance",
        "Stop a running instance: running attempts are stopped, nothing new starts",
        ActionReason,
        _stop,
    ),
    InstanceAction(
        "kill",
        "kill_instance",
        "Kill a running instance: running attempts are stopped and it ends FAILED",
        ActionReason,
        _kill,
    ),
    InstanceAction(
        "unblock",
        "unblock_instance",
        "Let a STRICT_SEQUENTIAL queue move on past this failed run",
        None,
        _unblock,
        "The run stays as it ended; the next queued instance of its workflow may start. Does\n"
        "nothing unless this run is the one blocking the queue.",
    ),
    InstanceAction(
        "restart",
        "restart_instance",
        "Restart a finished instance as a new run",
        RestartBody,
        _restart,
    ),
    InstanceAction(
        "pause",
        "pause_instance",
        "Pause a running instance: no new step starts; running attempts go on",
        ActionReason,
        _pause,
    ),
    InstanceAction("resume", "resume_instance", "Resume a paused instance", None, _resume),
)


async def act(
    action: InstanceAction,
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: str,
    body: BaseModel | None,
) -> ActionAccepted:
    """The one body of every action route."""
    command_of = await action.prepare(pool, instance_id, body)
    row = await instance_row(pool, instance_id)
    status = InstanceStatus(row["status"])
    if status not in INSTANCE_ACTIONS[action.name]:
        raise problems.conflict(f"cannot {action.name} an instance that is {status.value}")
    command_id = await publish(producer, codec, command_of(row))
    return ActionAccepted.model_validate(
        {"instance_id": instance_id, "action": action.name, "command_id": command_id}
    )


def endpoint(action: InstanceAction) -> Callable[..., Awaitable[ActionAccepted]]:
    """The action's route function. FastAPI reads a route's parameters (and so the OpenAPI
    document) from its function's signature, and the body's type differs by action: the
    signature is built here from the table rather than written out once per action."""

    async def route(
        pool: Pool,
        producer: Producer,
        codec: Codec,
        instance_id: InstanceId,
        body: BaseModel | None = None,
    ) -> ActionAccepted:
        return await act(action, pool, producer, codec, instance_id, body)

    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter("pool", keyword, annotation=Pool),
        inspect.Parameter("producer", keyword, annotation=Producer),
        inspect.Parameter("codec", keyword, annotation=Codec),
        inspect.Parameter("instance_id", keyword, annotation=InstanceId),
    ]
    if action.body is not None:
        optional_body = Annotated[action.body | None, Body()]  # type: ignore[name-defined]
        parameters.append(
            inspect.Parameter("body", keyword, annotation=optional_body, default=None)
        )
    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=ActionAccepted
    )
    route.__name__ = route.__qualname__ = action.route_name
    route.__doc__ = action.description or None
    return route


router = APIRouter(prefix="/instances", tags=["instances"])
for _action in ACTIONS:
    router.add_api_route(
        f"/{{instance_id}}/actions/{_action.name}",
        endpoint(_action),
        methods=["POST"],
        status_code=202,
        responses=ACTION_RESPONSES,
        summary=_action.summary,
    )
