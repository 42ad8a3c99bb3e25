"""Subworkflow children: the version a child runs, and its start."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from services.domain.kernel.errors import DefinitionError, Rejected
from services.domain.kernel.statuses import InstanceStatus
from services.domain.language.evaluation import check_overrides
from services.domain.language.steps import MAX_SUBWORKFLOW_DEPTH
from services.domain.language.workflow import load_workflow
from services.domain.protocol.commands import (
    ReportChildEnded,
    StartChild,
    StartInstance,
)
from services.domain.workflow.draft import WorkflowDraft
from services.domain.workflow.state import WorkflowState


def _start_child(d: WorkflowDraft, c: StartChild) -> None:
    """Resolve the version a subworkflow step asks for and start the child outside the run
    strategy (it is part of its parent's run). What cannot start is reported to the parent,
    never dropped: its step fails with the reason."""
    try:
        definition = _child_definition(d.state, c)
        check_overrides(load_workflow(definition), json.loads(c.params))
    except (Rejected, DefinitionError) as err:
        if c.sync:
            d.send(
                ReportChildEnded(
                    instance_id=c.parent_instance_id,
                    step_id=c.parent_step_id,
                    attempt=c.parent_attempt,
                    child_id=c.instance_id,
                    status=InstanceStatus.FAILED,
                    reason=f"it could not start: {err}",
                )
            )
        return
    linked = c.sync  # an async child runs on its own: nobody waits for its end
    d.send(
        StartInstance(
            instance_id=c.instance_id,
            workflow_id=c.workflow_id,
            version=_version_of(d.state, c),
            definition=definition,
            params=c.params,
            initiator=c.initiator,
            idempotency_key=None,
            admitted=True,
            parent_instance_id=c.parent_instance_id if linked else None,
            parent_step_id=c.parent_step_id if linked else None,
            parent_attempt=c.parent_attempt if linked else 0,
            depth=c.depth,
            breakpoints=tuple(sorted(d.state.breakpoints)) if d.state else (),
        )
    )


def _version_of(s: WorkflowState | None, c: StartChild) -> int:
    assert s is not None
    if c.version == "latest":
        return s.latest_version
    if c.version in ("active", "default"):
        if s.active_version is not None:
            return s.active_version
        if c.version == "active":
            raise Rejected(f"workflow {c.workflow_id!r} has no active version")
        return s.latest_version
    return int(c.version)


def _child_definition(s: WorkflowState | None, c: StartChild) -> str:
    if c.depth > MAX_SUBWORKFLOW_DEPTH:
        raise Rejected(f"subworkflows nest at most {MAX_SUBWORKFLOW_DEPTH} deep")
    if s is None or not s.definitions:
        raise Rejected(f"workflow {c.workflow_id!r} has no version")
    version = _version_of(s, c)
    definition = s.definitions.get(version)
    if definition is None:
        raise Rejected(f"workflow {c.workflow_id!r} has no version {version}")
    return definition


RULES: dict[type, Callable[[WorkflowDraft, Any], None]] = {
    StartChild: _start_child,
}
