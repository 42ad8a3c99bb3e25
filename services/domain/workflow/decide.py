"""decide for the workflow aggregate: versions, activation, and the run strategy that admits
instances (DESIGN §1: workflow-level state is an aggregate keyed by workflow id).

The admission protocol. A start request reaches the new instance, which asks its workflow
(`QueueInstance`); the workflow admits it at once (`InstanceAdmitted`, then `StartInstance`
with `admitted`) or queues it (`InstanceQueued`). An admitted instance tells its workflow
when it ends, or runs again after a restart (`NoteInstanceStatus`); the workflow then frees its
place and admits from the queue. Top-level instance ids are routed by their workflow id (see
`ROUTE_SEPARATOR`), so all of this is decided on one shard, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.protocol.aggregate import Decision, apply_rule
from services.domain.protocol.commands import (
    WorkflowCommand,
)
from services.domain.workflow import admission, children, timers, versions
from services.domain.workflow.draft import WorkflowDraft
from services.domain.workflow.state import WorkflowState

# Every command the workflow aggregate decides, and its rule.
RULES: dict[type, Callable[[WorkflowDraft, Any], None]] = {
    **versions.RULES,
    **admission.RULES,
    **children.RULES,
    **timers.RULES,
}


def decide_workflow(
    state: WorkflowState | None, command: WorkflowCommand, now: int, caused_at: int | None = None
) -> Decision[WorkflowState]:
    """The workflow aggregate's rules: the events (already folded into its state) and the
    commands they send."""
    d = WorkflowDraft(state, command.workflow_id, now, caused_at)
    return apply_rule(RULES, d, command).decision()
