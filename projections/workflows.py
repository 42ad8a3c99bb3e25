"""`workflows` and `workflow_versions`: each pushed definition, and the workflow's newest."""

from __future__ import annotations

import json
from collections.abc import Iterator

from projections.tables import Batch, Handler, Key, Table, ts
from services.domain.events import (
    Event,
    EventPayload,
    WorkflowActivated,
    WorkflowDeactivated,
    WorkflowVersionCreated,
)


def _workflow_keys(e: Event) -> Iterator[Key]:
    if isinstance(e.payload, WorkflowVersionCreated | WorkflowActivated | WorkflowDeactivated):
        yield (e.workflow_id,)


WORKFLOWS = Table(
    "workflows",
    columns=(
        ("workflow_id", "text"),
        ("latest_version", "int4"),
        ("active_version", "int4"),
        ("name", "text"),
        ("description", "text"),
        ("tags", "jsonb"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    key=("workflow_id",),
    keys_of=_workflow_keys,
)
WORKFLOW_VERSIONS = Table(
    "workflow_versions",
    columns=(
        ("workflow_id", "text"),
        ("version", "int4"),
        ("definition", "jsonb"),
        ("created_at", "timestamptz"),
    ),
    key=("workflow_id", "version"),
)
TABLES = (WORKFLOWS, WORKFLOW_VERSIONS)


def _version_created(b: Batch, e: Event, p: WorkflowVersionCreated) -> None:
    at = ts(e.occurred_at)
    b.put(
        WORKFLOW_VERSIONS,
        {
            "workflow_id": e.workflow_id,
            "version": p.version,
            "definition": p.definition,
            "created_at": at,
        },
    )
    old = b.get(WORKFLOWS, (e.workflow_id,))
    if old is not None and old["latest_version"] >= p.version:
        return  # an older version arriving late describes nothing newer
    definition = json.loads(p.definition)
    b.put(
        WORKFLOWS,
        {
            "workflow_id": e.workflow_id,
            "latest_version": p.version,
            "active_version": None if old is None else old["active_version"],
            "name": definition.get("name"),
            "description": definition.get("description"),
            "tags": json.dumps(definition.get("tags") or []),
            "created_at": at if old is None else old["created_at"],
            "updated_at": at,
        },
    )


def _activated(b: Batch, e: Event, p: WorkflowActivated) -> None:
    b.update(WORKFLOWS, (e.workflow_id,), active_version=p.version, updated_at=ts(e.occurred_at))


def _deactivated(b: Batch, e: Event, p: WorkflowDeactivated) -> None:
    b.update(WORKFLOWS, (e.workflow_id,), active_version=None, updated_at=ts(e.occurred_at))


HANDLERS: dict[type[EventPayload], Handler] = {
    WorkflowVersionCreated: _version_created,
    WorkflowActivated: _activated,
    WorkflowDeactivated: _deactivated,
}
