"""Which tasks a batch of decided events sends to workers (a pure function of the events)."""

from __future__ import annotations

from services.domain.instance.state import InstanceState
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.events import (
    Event,
    StepAttemptCreated,
    StepAttemptFailed,
    StepSkipped,
    StepStopped,
)
from services.domain.protocol.tasks import Task


def tasks_for(state: InstanceState, events: list[Event]) -> list[Task]:
    tasks = []
    dag = state.workflow.dag
    for e in events:
        p = e.payload
        if not isinstance(p, StepAttemptCreated) or p.queue is None:
            continue
        step = dag.steps[p.step_id]
        tasks.append(
            Task(
                instance_id=state.instance_id,
                workflow_id=state.workflow_id,
                step_id=p.step_id,
                attempt=p.attempt,
                run=p.run,
                step_type=p.step_type,
                queue=p.queue,
                config=dag.task_configs[p.step_id],
                params=p.params,
                timeout_seconds=step.timeout,
                created_at=e.occurred_at,
            )
        )
    return tasks


def cancellations(events: list[Event]) -> list[Event]:
    """Events that end an attempt a worker may still be running, without the worker's
    word: a stop, or a timeout or lost heartbeat decided by the engine. Workers receive
    them on the control topic and kill the attempt's processes."""
    return [
        e
        for e in events
        if isinstance(e.payload, StepStopped)
        or (isinstance(e.payload, StepSkipped) and e.payload.attempt > 0)
        or (
            isinstance(e.payload, StepAttemptFailed)
            and e.payload.kind in (FailureKind.TIMEOUT, FailureKind.PLATFORM)
        )
    ]
