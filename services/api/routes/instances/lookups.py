"""The reads the instance routes share: each row they act on, or a 404 naming what is
missing; and the checks a restart needs, from the instance's own definition."""

from __future__ import annotations

from typing import Any

from services.api import problems
from services.api.common import canonical_json, json_value, row_dict
from services.api.deps import Pool
from services.domain.kernel.statuses import StepStatus
from services.domain.language.workflow import Workflow, load_workflow

INSTANCE_SQL = "SELECT * FROM instances WHERE instance_id = $1"


async def instance_row(pool: Pool, instance_id: str) -> dict[str, Any]:
    """The `instances` row (its JSON columns decoded), or 404."""
    row = await pool.fetchrow(INSTANCE_SQL, instance_id)
    if row is None:
        raise problems.not_found(f"instance {instance_id!r}")
    return row_dict(row, "params", "failed_steps")


async def step_row(pool: Pool, instance_id: str, step_id: str) -> dict[str, Any]:
    """The `steps` row of one step of the instance, or 404."""
    row = await pool.fetchrow(
        "SELECT * FROM steps WHERE instance_id = $1 AND step_id = $2", instance_id, step_id
    )
    if row is None:
        raise problems.not_found(f"step {step_id!r} of instance {instance_id!r}")
    return dict(row)


async def instance_workflow(pool: Pool, instance_id: str) -> Workflow:
    """The definition the instance runs, as its `InstanceStarted` recorded it: a loop's
    iteration runs the loop's body, not its workflow's version. A start still queued has no
    such event yet: then the version it will run."""
    row = await instance_row(pool, instance_id)
    # The text is in the event's row, or, when the event names it by hash, in `definitions`.
    definition = await pool.fetchval(
        "SELECT coalesce(nullif(e.payload->>'definition', ''), d.definition) FROM events e"
        " LEFT JOIN definitions d ON d.hash = e.payload->>'definition_hash'"
        " WHERE e.aggregate_id = $1 AND e.type = 'InstanceStarted'",
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


async def check_restartable_from(pool: Pool, instance_id: str, step_id: str) -> None:
    """FROM_STEP needs a step whose upstream steps all completed (409 names the first that
    did not)."""
    await step_row(pool, instance_id, step_id)
    dag = (await instance_workflow(pool, instance_id)).dag
    rows = await pool.fetch("SELECT step_id, status FROM steps WHERE instance_id = $1", instance_id)
    statuses = {r["step_id"]: StepStatus(r["status"]) for r in rows}
    blocked = dag.incomplete_upstream(step_id, statuses)
    if blocked is not None:
        raise problems.conflict(
            f"cannot restart from step {step_id}: upstream step {blocked} is"
            f" {statuses[blocked].value}"
        )
