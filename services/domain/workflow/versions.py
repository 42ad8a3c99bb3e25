"""Versions and activation, and the workflow's breakpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from services.domain.kernel.documents import load_json
from services.domain.kernel.errors import DefinitionError, Rejected
from services.domain.language.parse import parse_workflow
from services.domain.language.workflow import any_version_has_step
from services.domain.protocol.commands import (
    ActivateWorkflow,
    ApplyWorkflowBreakpoints,
    DeactivateWorkflow,
    PushWorkflow,
    SetWorkflowBreakpoint,
)
from services.domain.protocol.events import (
    WorkflowActivated,
    WorkflowBreakpointSet,
    WorkflowDeactivated,
    WorkflowVersionCreated,
)
from services.domain.workflow.admission import admit_queued
from services.domain.workflow.draft import WorkflowDraft
from services.domain.workflow.state import WorkflowState
from services.domain.workflow.timers import arm_triggers


def _push(d: WorkflowDraft, c: PushWorkflow) -> None:
    try:
        wf = parse_workflow(load_json(c.definition))
    except DefinitionError as err:
        raise Rejected(str(err)) from None
    except json.JSONDecodeError as err:
        raise Rejected(f"definition is not JSON: {err}") from None
    if wf.id != c.workflow_id:
        raise Rejected(f"definition id {wf.id!r} differs from workflow id {c.workflow_id!r}")
    version = (d.state.latest_version if d.state else 0) + 1
    before = d.state.active_version if d.state else None
    d.emit(WorkflowVersionCreated(version=version, definition=wf.to_json()))
    if c.activate:
        d.emit(WorkflowActivated(version))
        arm_triggers(d, before)
    # A new version may bring a larger limit: whoever waited for it starts now.
    admit_queued(d)


def _versions(d: WorkflowDraft) -> WorkflowState:
    if d.state is None or d.state.latest_version == 0:
        raise Rejected(f"workflow {d.workflow_id!r} has no version")
    return d.state


def _activate(d: WorkflowDraft, c: ActivateWorkflow) -> None:
    s = _versions(d)
    version = s.latest_version if c.version is None else c.version
    if not 1 <= version <= s.latest_version:
        raise Rejected(
            f"workflow {c.workflow_id!r} has versions 1 to {s.latest_version}, not {version}"
        )
    if version != s.active_version:
        before = s.active_version
        d.emit(WorkflowActivated(version))
        arm_triggers(d, before)


def _deactivate(d: WorkflowDraft, c: DeactivateWorkflow) -> None:
    s = _versions(d)
    if s.active_version is not None:
        before = s.active_version
        d.emit(WorkflowDeactivated(s.active_version))
        arm_triggers(d, before)


def _set_breakpoint(d: WorkflowDraft, c: SetWorkflowBreakpoint) -> None:
    """A breakpoint names a step id of any version, at any depth of loops. It applies to the
    instances admitted from now on (and children started), and to those running now."""
    s = _versions(d)
    if not any_version_has_step(s.definitions.values(), c.step_id):
        raise Rejected(f"no version of workflow {s.workflow_id!r} has a step {c.step_id!r}")
    if (c.step_id in s.breakpoints) == c.enabled:
        return
    after = d.emit(WorkflowBreakpointSet(c.step_id, c.enabled))
    points = tuple(sorted(after.breakpoints))
    for iid in sorted(after.running):
        d.send(ApplyWorkflowBreakpoints(iid, points))


RULES: dict[type, Callable[[WorkflowDraft, Any], None]] = {
    PushWorkflow: _push,
    ActivateWorkflow: _activate,
    DeactivateWorkflow: _deactivate,
    SetWorkflowBreakpoint: _set_breakpoint,
}
