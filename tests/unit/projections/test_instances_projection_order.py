"""The instances read model is a function of the log even where the log has no single order:
a workflow's events (queued, dequeued) and its instance's own events may lie on different
partitions, which a rebuild may read in another order than the live projector did."""

from __future__ import annotations

from itertools import permutations

from projections import instances
from projections.tables import Batch
from services.domain.protocol.events import (
    Event,
    EventPayload,
    InstanceDequeued,
    InstanceQueued,
    InstanceStarted,
)

IID = "i-1"


def event(payload: EventPayload, instance_id: str | None, seq: int, at: int) -> Event:
    key = instance_id or "wf"
    return Event(f"{key}:{seq}", instance_id, "wf", seq, at, payload)


QUEUED = event(InstanceQueued(IID, 1, "{}", "{}", "api", None), None, 3, 1_000)
STARTED = event(InstanceStarted(1, "{}", "{}", "api", None, 9_000), IID, 1, 2_000)
DEQUEUED = event(InstanceDequeued(IID, "stopped while queued"), None, 4, 3_000)


def project(events: tuple[Event, ...]) -> dict[str, object] | None:
    b = Batch()
    for e in events:
        instances.HANDLERS[type(e.payload)](b, e, e.payload)
    return b.get(instances.INSTANCES, (IID,))


def test_a_queued_start_and_its_start_give_one_row_in_any_order() -> None:
    rows = [project(order) for order in permutations((QUEUED, STARTED))]
    assert rows[0] == rows[1]
    assert rows[0] is not None and rows[0]["status"] == "IN_PROGRESS"


def test_a_dequeue_never_overrides_a_start_that_happened_after_all() -> None:
    rows = [project(order) for order in permutations((QUEUED, DEQUEUED, STARTED))]
    # The workflow's own two events keep their order (one partition); the start may fall
    # anywhere around them.
    valid = [
        r
        for r, order in zip(rows, permutations((QUEUED, DEQUEUED, STARTED)), strict=True)
        if order.index(QUEUED) < order.index(DEQUEUED)
    ]
    assert all(r == valid[0] for r in valid)
    assert valid[0] is not None and valid[0]["status"] == "IN_PROGRESS"
    never_started = project((QUEUED, DEQUEUED))
    assert never_started is not None
    assert never_started["status"] == "STOPPED"
    assert never_started["failure_reason"] == "stopped while queued"
