"""The run strategy: the admission protocol (see decide.py's docstring of this package)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.kernel.statuses import InstanceStatus, RunStrategyRule
from services.domain.language.workflow import RunStrategy, load_workflow
from services.domain.protocol.commands import (
    ApplyWorkflowBreakpoints,
    DequeueInstance,
    NoteInstanceStatus,
    QueueInstance,
    StartInstance,
    StopInstance,
    UnblockWorkflow,
)
from services.domain.protocol.events import (
    InstanceAdmitted,
    InstanceDequeued,
    InstanceQueued,
    InstanceReleased,
    WorkflowUnblocked,
)
from services.domain.workflow.draft import WorkflowDraft
from services.domain.workflow.state import WorkflowState

# A workflow's queue holds at most this many waiting starts: a start beyond it is recorded as
# queued, then dequeued at once ("the queue is full"), like a FIRST_ONLY start, so the state
# and the snapshot of one workflow stay bounded however fast its starts come.
MAX_QUEUED = 100_000

# The ends of a run that block a STRICT_SEQUENTIAL queue until restart or unblock.
_BLOCKING = frozenset({InstanceStatus.FAILED, InstanceStatus.TIMED_OUT})


def _strategy(d: WorkflowDraft, definition: str | None = None) -> RunStrategy:
    """The latest version's run strategy; for a workflow never pushed, the start's own."""
    if d.state is not None and d.state.run_strategy is not None:
        return d.state.run_strategy
    if definition is not None:
        return load_workflow(definition).run_strategy
    return RunStrategy()


def _known(d: WorkflowDraft, instance_id: str) -> bool:
    s = d.state
    return s is not None and (instance_id in s.running or instance_id in s.queue)


def _queue(d: WorkflowDraft, c: QueueInstance) -> None:
    if _known(d, c.instance_id):
        return  # a duplicate request: the instance asks again until it exists
    strategy = _strategy(d, c.definition)
    rule = strategy.rule
    queued = InstanceQueued(
        c.instance_id, c.version, c.definition, c.params, c.initiator, c.idempotency_key
    )
    if rule is RunStrategyRule.FIRST_ONLY and d.state is not None and d.state.running:
        # Recorded as queued, then dropped: the read model shows the start and why it never ran.
        d.emit(queued)
        first = min(d.state.running)
        d.emit(InstanceDequeued(c.instance_id, f"FIRST_ONLY: instance {first} is running"))
        return
    if rule in (RunStrategyRule.LAST_ONLY, RunStrategyRule.SERIAL_LATEST_ONLY):
        for q in d.state.queue if d.state else ():
            d.emit(InstanceDequeued(q.instance_id, f"{rule.value}: superseded by {c.instance_id}"))
    if rule is RunStrategyRule.LAST_ONLY:
        for iid in sorted(d.state.running) if d.state else ():
            # It leaves `running` when it reports its end; the new one waits until then.
            d.send(StopInstance(iid, f"LAST_ONLY: superseded by {c.instance_id}"))
    s = d.state
    waiting = s is not None and (bool(s.queue) or s.blocked_by is not None)
    if not waiting and (len(s.running) if s else 0) < strategy.limit:
        after = d.emit(InstanceAdmitted(c.instance_id))  # the usual case: one small event
        d.send(_start(after, queued))
        return
    d.emit(queued)
    admit_queued(d, strategy)
    if d.state is not None and len(d.state.queue) > MAX_QUEUED:  # so it is still queued, last
        d.emit(InstanceDequeued(c.instance_id, f"the queue is full: {MAX_QUEUED} starts wait"))


def admit_queued(d: WorkflowDraft, strategy: RunStrategy | None = None) -> None:
    """Admit from the head of the queue while the strategy has room."""
    while d.state is not None and d.state.blocked_by is None:
        s = d.state
        head = s.queue.first()
        if head is None:
            return
        limit = (strategy or _strategy(d, head.definition)).limit
        if len(s.running) >= limit:
            return
        d.send(_start(d.emit(InstanceAdmitted(head.instance_id)), head))


def _start(s: WorkflowState, q: InstanceQueued) -> StartInstance:
    return StartInstance(
        instance_id=q.instance_id,
        workflow_id=s.workflow_id,
        version=q.version,
        definition=q.definition,
        params=q.params,
        initiator=q.initiator,
        idempotency_key=q.idempotency_key,
        admitted=True,
        breakpoints=tuple(sorted(s.breakpoints)),
    )


def _note(d: WorkflowDraft, c: NoteInstanceStatus) -> None:
    s = d.state
    if c.status.is_terminal:
        if s is None or c.instance_id not in s.running:
            return  # not admitted here (an older instance), or already noted
        blocking = _strategy(d).rule is RunStrategyRule.STRICT_SEQUENTIAL and c.status in _BLOCKING
        d.emit(InstanceReleased(c.instance_id, c.status, blocking))
        admit_queued(d)
    elif s is None or c.instance_id not in s.running:
        # A restart runs at once (the run was admitted before) and holds a place again; a
        # restart of the run that blocks the queue unblocks it (InstanceAdmitted does).
        admitted = d.emit(InstanceAdmitted(c.instance_id))
        # Its workflow's breakpoints now (some may have been set or cleared while it was over;
        # the steps its new run started at once are past them).
        d.send(ApplyWorkflowBreakpoints(c.instance_id, tuple(sorted(admitted.breakpoints))))


def _dequeue(d: WorkflowDraft, c: DequeueInstance) -> None:
    s = d.state
    if s is None:
        return
    if c.instance_id in s.queue:
        d.emit(InstanceDequeued(c.instance_id, c.reason or "stopped while queued"))
    elif c.instance_id in s.running:
        d.send(StopInstance(c.instance_id, c.reason))  # admitted meanwhile: stop it


def _unblock(d: WorkflowDraft, c: UnblockWorkflow) -> None:
    s = d.state
    if s is None or s.blocked_by is None:
        return
    if c.instance_id is not None and c.instance_id != s.blocked_by:
        return  # another run blocks the queue (or none): unblocking this one changes nothing
    d.emit(WorkflowUnblocked(s.blocked_by))
    admit_queued(d)


RULES: dict[type, Callable[[WorkflowDraft, Any], None]] = {
    QueueInstance: _queue,
    NoteInstanceStatus: _note,
    DequeueInstance: _dequeue,
    UnblockWorkflow: _unblock,
}
