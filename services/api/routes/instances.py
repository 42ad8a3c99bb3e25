"""Instances: read status, steps, attempts and history; stop, kill and restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from services.api import problems
from services.api.common import canonical_json, json_value, page, publish, row_dict
from services.api.deps import Codec, Pool, Producer
from services.api.dto import (
    DEFAULT_PAGE,
    ActionAccepted,
    ActionReason,
    AttemptPublic,
    EventPage,
    InstancePublic,
    InstanceSummary,
    Page,
    RestartBody,
    StepActionAccepted,
    StepPublic,
)
from services.api.inputs import (
    AfterSeq,
    InstanceId,
    InstanceIdFilter,
    Limit,
    Offset,
    StepId,
    WorkflowIdFilter,
)
from services.domain.kernel.errors import DefinitionError
from services.domain.kernel.statuses import (
    INSTANCE_ACTIONS,
    STEP_ACTIONS,
    InstanceStatus,
    RestartMode,
    StepStatus,
)
from services.domain.language.evaluation import check_overrides
from services.domain.language.workflow import Workflow, load_workflow
from services.domain.protocol.commands import (
    BypassSignals,
    Command,
    DequeueInstance,
    KillInstance,
    PauseInstance,
    PauseStep,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    ResumeStep,
    SkipStep,
    StopInstance,
    StopStep,
    UnblockWorkflow,
)

MAX_WAIT_SECONDS = 30.0
WAIT_POLL_SECONDS = 0.05

router = APIRouter(prefix="/instances", tags=["instances"])

_INSTANCE_SQL = "SELECT * FROM instances WHERE instance_id = $1"


async def _instance_row(pool: Pool, instance_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(_INSTANCE_SQL, instance_id)
    if row is None:
        raise problems.not_found(f"instance {instance_id!r}")
    return row_dict(row, "params", "failed_steps")


@router.get("", summary="List instances, newest first")
async def list_instances(
    pool: Pool,
    workflow_id: WorkflowIdFilter = None,
    status: InstanceStatus | None = None,
    parent_instance_id: InstanceIdFilter = None,
    top_level: Annotated[
        bool, Query(description="only instances that are no other instance's child")
    ] = False,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[InstanceSummary]:
    rows = await pool.fetch(
        "SELECT instance_id, workflow_id, version, run, status, initiator, created_at,"
        " updated_at, ended_at, parent_instance_id, parent_step_id FROM instances"
        " WHERE ($1::text IS NULL OR workflow_id = $1) AND ($2::text IS NULL OR status = $2)"
        " AND ($5::text IS NULL OR parent_instance_id = $5)"
        " AND (NOT $6 OR parent_instance_id IS NULL)"
        " ORDER BY created_at DESC, instance_id LIMIT $3 OFFSET $4",
        workflow_id,
        status.value if status else None,
        limit + 1,
        offset,
        parent_instance_id,
        top_level,
    )
    return Page[InstanceSummary].model_validate(page([dict(r) for r in rows], limit, offset))


@router.get("/{instance_id}", responses=problems.responses(404), summary="Get an instance")
async def get_instance(
    pool: Pool,
    instance_id: InstanceId,
    wait_seconds: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="wait up to this long for the instance to appear (read-your-writes"
            " after a start)",
        ),
    ] = 0,
) -> InstancePublic:
    deadline = time.monotonic() + wait_seconds
    row = await pool.fetchrow(_INSTANCE_SQL, instance_id)
    while row is None and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_SECONDS)
        row = await pool.fetchrow(_INSTANCE_SQL, instance_id)
    if row is None:
        raise problems.not_found(f"instance {instance_id!r}")
    counts = await pool.fetch(
        "SELECT status, count(*) AS n FROM steps WHERE instance_id = $1 GROUP BY status",
        instance_id,
    )
    data = row_dict(row, "params", "failed_steps")
    data["step_counts"] = {r["status"]: r["n"] for r in counts}
    return InstancePublic.model_validate(data)


@router.get(
    "/{instance_id}/steps",
    responses=problems.responses(404),
    summary="The steps of an instance, in definition order",
)
async def list_steps(pool: Pool, instance_id: InstanceId) -> list[StepPublic]:
    await _instance_row(pool, instance_id)
    rows = await pool.fetch(
        "SELECT * FROM steps WHERE instance_id = $1 ORDER BY position", instance_id
    )
    return [StepPublic.model_validate(row_dict(r, "iterations", "signals")) for r in rows]


_ATTEMPT_JSON = ("params", "outputs")


@router.get(
    "/{instance_id}/attempts",
    responses=problems.responses(404),
    summary="Every attempt of every step of an instance",
)
async def list_attempts(pool: Pool, instance_id: InstanceId) -> list[AttemptPublic]:
    await _instance_row(pool, instance_id)
    rows = await pool.fetch(
        "SELECT * FROM attempts WHERE instance_id = $1 ORDER BY created_at, step_id, attempt",
        instance_id,
    )
    return [AttemptPublic.model_validate(row_dict(r, *_ATTEMPT_JSON)) for r in rows]


@router.get(
    "/{instance_id}/steps/{step_id}/attempts",
    responses=problems.responses(404),
    summary="The attempts of one step",
)
async def list_step_attempts(
    pool: Pool, instance_id: InstanceId, step_id: StepId
) -> list[AttemptPublic]:
    await _instance_row(pool, instance_id)
    step = await pool.fetchval(
        "SELECT 1 FROM steps WHERE instance_id = $1 AND step_id = $2", instance_id, step_id
    )
    if not step:
        raise problems.not_found(f"step {step_id!r} of instance {instance_id!r}")
    rows = await pool.fetch(
        "SELECT * FROM attempts WHERE instance_id = $1 AND step_id = $2 ORDER BY attempt",
        instance_id,
        step_id,
    )
    return [AttemptPublic.model_validate(row_dict(r, *_ATTEMPT_JSON)) for r in rows]


@router.get(
    "/{instance_id}/events",
    responses=problems.responses(404),
    summary="The history of an instance, one event per state transition",
)
async def list_events(
    pool: Pool,
    instance_id: InstanceId,
    after_seq: AfterSeq = 0,
    limit: Limit = DEFAULT_PAGE,
) -> EventPage:
    await _instance_row(pool, instance_id)
    rows = await pool.fetch(
        "SELECT seq, event_id, type, workflow_id, instance_id, occurred_at, caused_at, payload"
        " FROM events WHERE aggregate_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        instance_id,
        after_seq,
        limit,
    )
    items = [row_dict(r, "payload") for r in rows]
    return EventPage.model_validate(
        {"items": items, "next_after_seq": items[-1]["seq"] if items else after_seq}
    )


# -- actions -----------------------------------------------------------------------------


async def _act(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: str,
    action: str,
    make_command: Callable[[Mapping[str, Any]], Command],
) -> ActionAccepted:
    """Publish the action's command if the instance's status allows it (INSTANCE_ACTIONS);
    409 naming the status otherwise."""
    row = await _instance_row(pool, instance_id)
    status = InstanceStatus(row["status"])
    if status not in INSTANCE_ACTIONS[action]:
        raise problems.conflict(f"cannot {action} an instance that is {status.value}")
    command = make_command(row)
    if (
        isinstance(command, RestartInstance)
        and command.mode is RestartMode.FROM_INCOMPLETE
        and status is InstanceStatus.SUCCEEDED
    ):
        raise problems.conflict(
            "nothing to restart from incomplete steps: every step of this SUCCEEDED instance "
            "succeeded; restart with mode FROM_BEGINNING to run it again"
        )
    command_id = await publish(producer, codec, command)
    return ActionAccepted.model_validate(
        {"instance_id": instance_id, "action": action, "command_id": command_id}
    )


_ACTION_RESPONSES = problems.responses(404, 409)


@router.post(
    "/{instance_id}/actions/stop",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Stop a running instance: running attempts are stopped, nothing new starts",
)
async def stop_instance(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: InstanceId,
    body: Annotated[ActionReason | None, Body()] = None,
) -> ActionAccepted:
    reason = body.reason if body else ""
    return await _act(
        pool,
        producer,
        codec,
        instance_id,
        "stop",
        lambda row: _queued_or(row, reason, StopInstance(instance_id=instance_id, reason=reason)),
    )


@router.post(
    "/{instance_id}/actions/kill",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Kill a running instance: running attempts are stopped and it ends FAILED",
)
async def kill_instance(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: InstanceId,
    body: Annotated[ActionReason | None, Body()] = None,
) -> ActionAccepted:
    reason = body.reason if body else ""
    return await _act(
        pool,
        producer,
        codec,
        instance_id,
        "kill",
        lambda row: _queued_or(row, reason, KillInstance(instance_id=instance_id, reason=reason)),
    )


def _queued_or(row: Mapping[str, Any], reason: str, command: Command) -> Command:
    """A CREATED instance waits in its workflow's queue: the workflow takes it out (and stops
    it instead if it was admitted meanwhile)."""
    if row["status"] != InstanceStatus.CREATED.value:
        return command
    return DequeueInstance(row["workflow_id"], row["instance_id"], reason or "stopped while queued")


@router.post(
    "/{instance_id}/actions/unblock",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Let a STRICT_SEQUENTIAL queue move on past this failed run",
)
async def unblock_instance(
    pool: Pool, producer: Producer, codec: Codec, instance_id: InstanceId
) -> ActionAccepted:
    """The run stays as it ended; the next queued instance of its workflow may start. Does
    nothing unless this run is the one blocking the queue."""
    return await _act(
        pool,
        producer,
        codec,
        instance_id,
        "unblock",
        lambda row: UnblockWorkflow(row["workflow_id"], instance_id),
    )


@router.post(
    "/{instance_id}/actions/restart",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Restart a finished instance as a new run",
)
async def restart_instance(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: InstanceId,
    body: Annotated[RestartBody | None, Body()] = None,
) -> ActionAccepted:
    req = body or RestartBody()
    if (req.mode is RestartMode.FROM_STEP) != (req.step is not None):
        raise problems.invalid_input(
            [("step", "give `step` exactly when the mode is FROM_STEP")], "request"
        )
    if req.step is not None:
        await _check_restartable_from(pool, instance_id, req.step)
    if req.params:
        wf = await _instance_workflow(pool, instance_id)
        try:
            check_overrides(wf, req.params, restart=True)
            params = canonical_json(req.params)
        except DefinitionError as err:
            raise problems.from_definition_error(err, "params") from None
        except ValueError as err:  # NaN or infinity: not JSON
            raise problems.invalid_input([("params", str(err))], "params") from None
    else:
        params = "{}"

    def restart(row: Mapping[str, Any]) -> Command:
        # The run this caller saw end: a retried request restarts it once, not twice.
        return RestartInstance(
            instance_id=instance_id,
            mode=req.mode,
            expected_run=row["run"],
            params=params,
            step_id=req.step,
        )

    return await _act(pool, producer, codec, instance_id, "restart", restart)


@router.post(
    "/{instance_id}/actions/pause",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Pause a running instance: no new step starts; running attempts go on",
)
async def pause_instance(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: InstanceId,
    body: Annotated[ActionReason | None, Body()] = None,
) -> ActionAccepted:
    cmd = PauseInstance(instance_id=instance_id, reason=body.reason if body else "")
    return await _act(pool, producer, codec, instance_id, "pause", lambda _: cmd)


@router.post(
    "/{instance_id}/actions/resume",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Resume a paused instance",
)
async def resume_instance(
    pool: Pool, producer: Producer, codec: Codec, instance_id: InstanceId
) -> ActionAccepted:
    cmd = ResumeInstance(instance_id=instance_id)
    return await _act(pool, producer, codec, instance_id, "resume", lambda _: cmd)


async def _step_row(pool: Pool, instance_id: str, step_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT * FROM steps WHERE instance_id = $1 AND step_id = $2", instance_id, step_id
    )
    if row is None:
        raise problems.not_found(f"step {step_id!r} of instance {instance_id!r}")
    return dict(row)


async def _instance_workflow(pool: Pool, instance_id: str) -> Workflow:
    """The definition the instance runs, as its `InstanceStarted` recorded it: a loop's
    iteration runs the loop's body, not its workflow's version. A start still queued has no
    such event yet: then the version it will run."""
    row = await _instance_row(pool, instance_id)
    definition = await pool.fetchval(
        "SELECT payload->>'definition' FROM events"
        " WHERE aggregate_id = $1 AND type = 'InstanceStarted'",
        instance_id,
    )
    if definition is not None:
        return load_workflow(definition)
    definition = await pool.fetchval(
        "SELECT definition FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
        row["workflow_id"],
        row["version"],
    )
    return load_workflow(canonical_json(json_value(definition)))


async def _check_restartable_from(pool: Pool, instance_id: str, step_id: str) -> None:
    """FROM_STEP needs a step whose upstream steps all completed (409 names the first that
    did not)."""
    await _step_row(pool, instance_id, step_id)
    dag = (await _instance_workflow(pool, instance_id)).dag
    rows = await pool.fetch("SELECT step_id, status FROM steps WHERE instance_id = $1", instance_id)
    statuses = {r["step_id"]: StepStatus(r["status"]) for r in rows}
    blocked = dag.incomplete_upstream(step_id, statuses)
    if blocked is not None:
        raise problems.conflict(
            f"cannot restart from step {step_id}: upstream step {blocked} is"
            f" {statuses[blocked].value}"
        )


@router.post(
    "/{instance_id}/steps/{step_id}/actions/{action}",
    status_code=202,
    responses=_ACTION_RESPONSES,
    summary="Skip, stop, restart, pause (breakpoint), resume or bypass the signals of a step",
)
async def step_action(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    instance_id: InstanceId,
    step_id: StepId,
    action: Annotated[
        str, Path(pattern="^(skip|stop|restart|pause|resume|bypass-signals)$", max_length=14)
    ],
    body: Annotated[ActionReason | None, Body()] = None,
) -> StepActionAccepted:
    """`skip`: the step ends SKIPPED and its successors run (a running attempt is stopped).
    `stop`: its active attempt is stopped and it ends STOPPED. `restart`: a failed or stopped
    step runs again — in the live run, or, when the instance has ended, as a new run from
    that step (FROM_STEP). `pause`: a breakpoint — the step pauses (PAUSED) before it
    starts. `resume`: clears it, and starts the step if it is paused there.
    `bypass-signals`: a step WAITING_FOR_SIGNALS starts without them."""
    row = await _instance_row(pool, instance_id)
    step = await _step_row(pool, instance_id, step_id)
    status = InstanceStatus(row["status"])
    step_status = StepStatus(step["status"])
    reason = body.reason if body else ""
    command: Command
    if action == "restart" and status.is_terminal:
        await _check_restartable_from(pool, instance_id, step_id)
        command = RestartInstance(
            instance_id=instance_id,
            mode=RestartMode.FROM_STEP,
            expected_run=row["run"],
            step_id=step_id,
        )
    else:
        if not status.is_live:
            raise problems.conflict(f"cannot {action} a step of an instance that is {status.value}")
        if step_status not in STEP_ACTIONS[action.replace("-", "_")]:
            raise problems.conflict(f"cannot {action} step {step_id}: it is {step_status.value}")
        if action == "skip":
            command = SkipStep(instance_id=instance_id, step_id=step_id, reason=reason)
        elif action == "stop":
            command = StopStep(instance_id=instance_id, step_id=step_id, reason=reason)
        elif action == "pause":
            command = PauseStep(instance_id=instance_id, step_id=step_id)
        elif action == "resume":
            command = ResumeStep(instance_id=instance_id, step_id=step_id)
        elif action == "bypass-signals":
            command = BypassSignals(instance_id=instance_id, step_id=step_id, reason=reason)
        else:
            command = RestartStep(instance_id=instance_id, step_id=step_id)
    command_id = await publish(producer, codec, command)
    return StepActionAccepted.model_validate(
        {"instance_id": instance_id, "step_id": step_id, "action": action, "command_id": command_id}
    )
