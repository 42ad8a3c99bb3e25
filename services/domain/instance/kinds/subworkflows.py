"""Subworkflow steps: the child instance they start."""

from __future__ import annotations

import json

from services.domain.instance.attempts import succeed
from services.domain.instance.draft import ENGINE_WORKER, Draft
from services.domain.kernel.clock import MICROS
from services.domain.kernel.documents import dumps
from services.domain.language.steps import (
    SubworkflowStep,
)
from services.domain.protocol.commands import StartChild
from services.domain.protocol.events import (
    StepAttemptStarted,
)
from services.domain.protocol.routing import child_id


def start_child(d: Draft, step: SubworkflowStep, attempt: int, params: str) -> None:
    """The child's workflow resolves the version and starts it (StartChild). A sync step runs
    until the child reports its end; an async one succeeds once the child is asked for."""
    child = child_id(d.s.instance_id, step.id, attempt)
    values = json.loads(params)
    d.send(
        StartChild(
            workflow_id=step.workflow,
            instance_id=child,
            version=str(step.version),
            params=dumps({k: values[k] for k in step.params if k in values}),
            initiator=f"subworkflow:{d.s.instance_id}/{step.id}",
            parent_instance_id=d.s.instance_id,
            parent_step_id=step.id,
            parent_attempt=attempt,
            depth=d.s.depth + 1,
            sync=step.sync,
        )
    )
    if step.sync:
        timeout_at = None if step.timeout is None else d.now + round(step.timeout * MICROS)
        started = StepAttemptStarted(step.id, attempt, ENGINE_WORKER, timeout_at, wake_at=None)
        d.emit(started)
    else:
        succeed(d, step.id, attempt, dumps({"instance_id": child}))
