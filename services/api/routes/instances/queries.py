"""Reading an instance: its status, steps, attempts and history."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query

from services.api import problems
from services.api.common import page, row_dict
from services.api.deps import Pool
from services.api.dto import (
    DEFAULT_PAGE,
    AttemptPublic,
    EventPage,
    InstancePublic,
    InstanceSummary,
    Page,
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
from services.api.routes.instances.lookups import INSTANCE_SQL, instance_row
from services.domain.kernel.statuses import (
    InstanceStatus,
)

MAX_WAIT_SECONDS = 30.0
WAIT_POLL_SECONDS = 0.05

router = APIRouter(prefix="/instances", tags=["instances"])


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
    row = await pool.fetchrow(INSTANCE_SQL, instance_id)
    while row is None and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_SECONDS)
        row = await pool.fetchrow(INSTANCE_SQL, instance_id)
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
    await instance_row(pool, instance_id)
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
    await instance_row(pool, instance_id)
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
    await instance_row(pool, instance_id)
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
    await instance_row(pool, instance_id)
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
