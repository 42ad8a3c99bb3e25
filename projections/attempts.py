"""`attempts`: one row per attempt of a step, from its creation to its end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from projections.tables import Batch, Handler, Key, Table, ts, ts_or_none
from services.domain.kernel.statuses import AttemptStatus
from services.domain.protocol.events import (
    Event,
    EventPayload,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepAttemptSucceeded,
    StepSkipped,
    StepStopped,
)


def _attempt_keys(e: Event) -> Iterator[Key]:
    p = e.payload
    if isinstance(
        p, StepAttemptStarted | StepAttemptSucceeded | StepAttemptFailed | StepStopped
    ) or (isinstance(p, StepSkipped) and p.attempt > 0):
        yield (e.instance_id, p.step_id, p.attempt)


ATTEMPTS = Table(
    "attempts",
    columns=(
        ("instance_id", "text"),
        ("step_id", "text"),
        ("attempt", "int4"),
        ("run", "int4"),
        ("status", "text"),
        ("queue", "text"),
        ("worker_id", "text"),
        ("params", "jsonb"),
        ("outputs", "jsonb"),
        ("failure_kind", "text"),
        ("message", "text"),
        ("output_tail", "text"),
        ("retry_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("started_at", "timestamptz"),
        ("ended_at", "timestamptz"),
    ),
    key=("instance_id", "step_id", "attempt"),
    keys_of=_attempt_keys,
)
TABLES = (ATTEMPTS,)


def _created(b: Batch, e: Event, p: StepAttemptCreated) -> None:
    b.put(
        ATTEMPTS,
        {
            "instance_id": e.instance_id,
            "step_id": p.step_id,
            "attempt": p.attempt,
            "run": p.run,
            "status": AttemptStatus.STARTING.value,
            "queue": p.queue,
            "worker_id": None,
            "params": p.params,
            "outputs": None,
            "failure_kind": None,
            "message": None,
            "output_tail": None,
            "retry_at": None,
            "created_at": ts(e.occurred_at),
            "started_at": None,
            "ended_at": None,
        },
    )


def _reported_at(e: Event) -> datetime:
    """When the worker said it (its report's issue time, `caused_at`): the attempt's real
    start or end, even when a short step's start and result are decided together. The
    engine's own decisions (a timeout, a lost heartbeat) carry none: the decision time."""
    return ts(e.caused_at if e.caused_at is not None else e.occurred_at)


def _started(b: Batch, e: Event, p: StepAttemptStarted) -> None:
    b.update(
        ATTEMPTS,
        (e.instance_id, p.step_id, p.attempt),
        status=AttemptStatus.RUNNING.value,
        worker_id=p.worker_id,
        started_at=_reported_at(e),
    )


def _succeeded(b: Batch, e: Event, p: StepAttemptSucceeded) -> None:
    b.update(
        ATTEMPTS,
        (e.instance_id, p.step_id, p.attempt),
        status=AttemptStatus.SUCCEEDED.value,
        outputs=p.outputs,
        ended_at=_reported_at(e),
    )


def _failed(b: Batch, e: Event, p: StepAttemptFailed) -> None:
    b.update(
        ATTEMPTS,
        (e.instance_id, p.step_id, p.attempt),
        status=p.kind.attempt_status.value,
        failure_kind=p.kind.value,
        message=p.message,
        output_tail=p.output_tail,
        retry_at=ts_or_none(p.retry_at),
        ended_at=_reported_at(e),
    )


def _stopped(b: Batch, e: Event, p: StepStopped | StepSkipped) -> None:
    # A step waiting for its retry is stopped after its last attempt already ended: that
    # attempt keeps the failure it ended with. A skipped step's attempt in flight (if any)
    # is stopped too.
    if isinstance(p, StepSkipped) and p.attempt == 0:
        return
    key = (e.instance_id, p.step_id, p.attempt)
    row = b.get(ATTEMPTS, key)
    if row is None or AttemptStatus(row["status"]).is_terminal:
        return
    b.update(
        ATTEMPTS,
        key,
        status=AttemptStatus.STOPPED.value,
        message=p.reason,
        ended_at=ts(e.occurred_at),
    )


HANDLERS: dict[type[EventPayload], Handler] = {
    StepAttemptCreated: _created,
    StepAttemptStarted: _started,
    StepAttemptSucceeded: _succeeded,
    StepAttemptFailed: _failed,
    StepStopped: _stopped,
    StepSkipped: _stopped,
}
