"""`instances`: one row per instance, its status and run, as of its newest event.

Every event of the instance advances `last_seq` and `updated_at` (the API's consistency
token compares against `last_seq`); the lifecycle events also change the status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from projections.tables import Batch, Handler, Key, Table, ts
from services.domain.kernel.statuses import InstanceStatus
from services.domain.protocol.events import (
    BreakpointSet,
    Event,
    EventPayload,
    InstanceDequeued,
    InstanceFailed,
    InstancePaused,
    InstanceQueued,
    InstanceRestarted,
    InstanceResumed,
    InstanceStarted,
    InstanceStopped,
    InstanceSucceeded,
    InstanceTimedOut,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepAttemptSucceeded,
    StepEvaluationFailed,
    StepPaused,
    StepRestarted,
    StepResumed,
    StepSkipped,
    StepStopped,
    StepUnsatisfied,
)


def _instance_keys(e: Event) -> Iterator[Key]:
    if isinstance(e.payload, InstanceQueued | InstanceDequeued):
        yield (e.payload.instance_id,)  # a workflow event about one of its instances
    elif e.instance_id is not None and not isinstance(e.payload, InstanceStarted):
        yield (e.instance_id,)


INSTANCES = Table(
    "instances",
    columns=(
        ("instance_id", "text"),
        ("workflow_id", "text"),
        ("version", "int4"),
        ("run", "int4"),
        ("status", "text"),
        ("initiator", "text"),
        ("idempotency_key", "text"),
        ("params", "jsonb"),
        ("failure_reason", "text"),
        ("failed_steps", "jsonb"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("ended_at", "timestamptz"),
        ("last_seq", "int4"),
        ("parent_instance_id", "text"),  # a child: of this instance's step
        ("parent_step_id", "text"),
    ),
    key=("instance_id",),
    keys_of=_instance_keys,
)
TABLES = (INSTANCES,)


def _key(e: Event) -> Key:
    assert e.instance_id is not None, "an instance event names its instance"
    return (e.instance_id,)


def _new_row(
    b: Batch,
    e: Event,
    p: InstanceStarted | InstanceQueued,
    instance_id: str,
    status: InstanceStatus,
    last_seq: int,
) -> None:
    at = ts(e.occurred_at)
    b.put(
        INSTANCES,
        {
            "instance_id": instance_id,
            "workflow_id": e.workflow_id,
            "version": p.version,
            "run": 1,
            "status": status.value,
            "initiator": p.initiator,
            "idempotency_key": p.idempotency_key,
            "params": p.params,
            "failure_reason": None,
            "failed_steps": "[]",
            "created_at": at,
            "updated_at": at,
            "ended_at": None,
            "last_seq": last_seq,
            "parent_instance_id": p.parent_instance_id if isinstance(p, InstanceStarted) else None,
            "parent_step_id": p.parent_step_id if isinstance(p, InstanceStarted) else None,
        },
    )


def _started(b: Batch, e: Event, p: InstanceStarted) -> None:
    _new_row(b, e, p, _key(e)[0], InstanceStatus.IN_PROGRESS, e.seq)


# The workflow's events and its instances' events may lie on different partitions (an id
# that does not route with its workflow), and a rebuild may read the partitions in another
# order than the live projector did. So these two rows never override an instance's own
# events, whichever order they come in: the read model stays a function of the log.


def _queued(b: Batch, e: Event, p: InstanceQueued) -> None:
    """A start waiting for the run strategy: CREATED until InstanceStarted replaces the row.
    `last_seq` stays 0: no event of the instance itself exists yet."""
    if b.get(INSTANCES, (p.instance_id,)) is None:
        _new_row(b, e, p, p.instance_id, InstanceStatus.CREATED, 0)


def _dequeued(b: Batch, e: Event, p: InstanceDequeued) -> None:
    row = b.get(INSTANCES, (p.instance_id,))
    if row is None or row["status"] != InstanceStatus.CREATED.value:
        return  # started after all (a retried start request): its own events say how it went
    at = ts(e.occurred_at)
    b.update(
        INSTANCES,
        (p.instance_id,),
        status=InstanceStatus.STOPPED.value,
        failure_reason=p.reason,
        updated_at=at,
        ended_at=at,
    )


def _change(b: Batch, e: Event, **changes: Any) -> None:
    b.update(INSTANCES, _key(e), updated_at=ts(e.occurred_at), last_seq=e.seq, **changes)


def _restarted(b: Batch, e: Event, p: InstanceRestarted) -> None:
    params = {} if p.params is None else {"params": p.params}
    _change(
        b,
        e,
        **params,
        run=p.run,
        status=InstanceStatus.IN_PROGRESS.value,
        failure_reason=None,
        failed_steps="[]",
        ended_at=None,
    )


def _ended(b: Batch, e: Event, status: InstanceStatus, **changes: Any) -> None:
    _change(b, e, status=status.value, ended_at=ts(e.occurred_at), **changes)


def _succeeded(b: Batch, e: Event, p: InstanceSucceeded) -> None:
    _ended(b, e, InstanceStatus.SUCCEEDED)


def _failed(b: Batch, e: Event, p: InstanceFailed) -> None:
    _ended(
        b,
        e,
        InstanceStatus.FAILED,
        failure_reason=p.reason,
        failed_steps=json.dumps(list(p.failed_steps)),
    )


def _stopped(b: Batch, e: Event, p: InstanceStopped) -> None:
    # The stop reason is why the run ended without success: the API shows it as the reason.
    _ended(b, e, InstanceStatus.STOPPED, failure_reason=p.reason)


def _timed_out(b: Batch, e: Event, p: InstanceTimedOut) -> None:
    _ended(b, e, InstanceStatus.TIMED_OUT)


def _paused(b: Batch, e: Event, p: InstancePaused) -> None:
    _change(b, e, status=InstanceStatus.PAUSED.value)


def _resumed(b: Batch, e: Event, p: InstanceResumed) -> None:
    _change(b, e, status=InstanceStatus.IN_PROGRESS.value)


def _step_event(b: Batch, e: Event, p: Any) -> None:
    _change(b, e)


HANDLERS: dict[type[EventPayload], Handler] = {
    InstanceQueued: _queued,
    InstanceDequeued: _dequeued,
    InstanceStarted: _started,
    InstanceRestarted: _restarted,
    InstanceSucceeded: _succeeded,
    InstanceFailed: _failed,
    InstanceStopped: _stopped,
    InstanceTimedOut: _timed_out,
    StepAttemptCreated: _step_event,
    StepAttemptStarted: _step_event,
    StepAttemptSucceeded: _step_event,
    StepAttemptFailed: _step_event,
    StepStopped: _step_event,
    StepUnsatisfied: _step_event,
    StepEvaluationFailed: _step_event,
    InstancePaused: _paused,
    InstanceResumed: _resumed,
    StepSkipped: _step_event,
    StepRestarted: _step_event,
    BreakpointSet: _step_event,
    StepPaused: _step_event,
    StepResumed: _step_event,
}
