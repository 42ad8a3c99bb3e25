"""`workflows` and `workflow_versions`: each pushed definition, and the workflow's newest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from projections.tables import Batch, Handler, Key, Table, json_column, ts
from services.domain.language.params import iso_timestamp
from services.domain.protocol.events import (
    Event,
    EventPayload,
    TimeTriggerFired,
    TimeTriggerScheduled,
    WorkflowActivated,
    WorkflowBreakpointSet,
    WorkflowDeactivated,
    WorkflowVersionCreated,
)


def _workflow_keys(e: Event) -> Iterator[Key]:
    if isinstance(
        e.payload,
        WorkflowVersionCreated
        | WorkflowActivated
        | WorkflowDeactivated
        | TimeTriggerScheduled
        | TimeTriggerFired
        | WorkflowBreakpointSet,
    ):
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
        # The active version's time triggers: [{index, scheduled_for, fire_at, fired}].
        ("time_triggers", "jsonb"),
        ("breakpoints", "jsonb"),  # step ids every instance pauses at, sorted
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
            "time_triggers": "[]" if old is None else old["time_triggers"],
            "breakpoints": "[]" if old is None else old["breakpoints"],
        },
    )


def _activated(b: Batch, e: Event, p: WorkflowActivated) -> None:
    at = ts(e.occurred_at)
    b.update(
        WORKFLOWS, (e.workflow_id,), active_version=p.version, updated_at=at, time_triggers="[]"
    )


def _deactivated(b: Batch, e: Event, p: WorkflowDeactivated) -> None:
    at = ts(e.occurred_at)
    b.update(WORKFLOWS, (e.workflow_id,), active_version=None, updated_at=at, time_triggers="[]")


def _set_trigger(b: Batch, e: Event, index: int, next_at: tuple[int, int], **more: Any) -> None:
    """Trigger `index`'s entry: its next cron and fire times, and `more` (firings so far…)."""
    row = b.get(WORKFLOWS, (e.workflow_id,))
    if row is None:
        return
    others = [t for t in json_column(row, "time_triggers") or [] if t["index"] != index]
    entry = {
        "index": index,
        "scheduled_for": iso_timestamp(ts(next_at[0])),
        "fire_at": iso_timestamp(ts(next_at[1])),
        "fired": 0,
        **more,
    }
    triggers = sorted([*others, entry], key=lambda t: t["index"])
    b.update(WORKFLOWS, (e.workflow_id,), time_triggers=json.dumps(triggers, sort_keys=True))


def _trigger_scheduled(b: Batch, e: Event, p: TimeTriggerScheduled) -> None:
    _set_trigger(b, e, p.index, (p.scheduled_for, p.fire_at))


def _trigger_fired(b: Batch, e: Event, p: TimeTriggerFired) -> None:
    old = json_column(b.get(WORKFLOWS, (e.workflow_id,)), "time_triggers") or []
    fired = next((t["fired"] for t in old if t["index"] == p.index), 0) + 1
    nxt = (p.next_scheduled_for, p.next_fire_at)
    _set_trigger(b, e, p.index, nxt, fired=fired, last_instance_id=p.instance_id)


def _breakpoint_set(b: Batch, e: Event, p: WorkflowBreakpointSet) -> None:
    old = set(json_column(b.get(WORKFLOWS, (e.workflow_id,)), "breakpoints") or [])
    points = old | {p.step_id} if p.enabled else old - {p.step_id}
    b.update(WORKFLOWS, (e.workflow_id,), breakpoints=json.dumps(sorted(points)))


HANDLERS: dict[type[EventPayload], Handler] = {
    WorkflowVersionCreated: _version_created,
    WorkflowActivated: _activated,
    WorkflowDeactivated: _deactivated,
    TimeTriggerScheduled: _trigger_scheduled,
    TimeTriggerFired: _trigger_fired,
    WorkflowBreakpointSet: _breakpoint_set,
}
