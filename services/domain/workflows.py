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

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.domain.commands import (
    ROUTE_SEPARATOR,
    ActivateWorkflow,
    ApplyWorkflowBreakpoints,
    Command,
    DeactivateWorkflow,
    DequeueInstance,
    FireWorkflowTimers,
    NoteInstanceStatus,
    PushWorkflow,
    QueueInstance,
    Rejected,
    ReportChildEnded,
    SetWorkflowBreakpoint,
    StartChild,
    StartInstance,
    StopInstance,
    TriggerInstance,
    UnblockWorkflow,
    WorkflowCommand,
    nul_field,
)
from services.domain.definition import (
    RunStrategy,
    any_version_has_step,
    load_workflow,
    parse_workflow,
)
from services.domain.documents import NUL_MESSAGE, load_json
from services.domain.evaluation import check_overrides
from services.domain.events import (
    Event,
    EventPayload,
    InstanceAdmitted,
    InstanceDequeued,
    InstanceQueued,
    InstanceReleased,
    TimeTriggerFired,
    TimeTriggerScheduled,
    WorkflowActivated,
    WorkflowBreakpointSet,
    WorkflowDeactivated,
    WorkflowUnblocked,
    WorkflowVersionCreated,
)
from services.domain.evolve import evolve_workflow
from services.domain.fields import DefinitionError
from services.domain.progress import dumps
from services.domain.signal_commands import SetSignalTriggers
from services.domain.signal_specs import match_to_json
from services.domain.state import WorkflowState
from services.domain.statuses import InstanceStatus, RunStrategyRule
from services.domain.steps import MAX_SUBWORKFLOW_DEPTH
from services.domain.triggers import jitter_of, next_time, trigger_params

# The ends of a run that block a STRICT_SEQUENTIAL queue until restart or unblock.
_BLOCKING = frozenset({InstanceStatus.FAILED, InstanceStatus.TIMED_OUT})


@dataclass
class WorkflowDraft:
    state: WorkflowState | None
    workflow_id: str
    now: int
    caused_at: int | None
    events: list[Event] = field(default_factory=list)
    sent: list[Command] = field(default_factory=list)

    def emit(self, payload: EventPayload) -> WorkflowState:
        """Record the event; the state after it."""
        seq = (self.state.seq if self.state else 0) + 1
        event = Event(
            event_id=f"{self.workflow_id}:{seq}",
            instance_id=None,
            workflow_id=self.workflow_id,
            seq=seq,
            occurred_at=self.now,
            payload=payload,
            caused_at=self.caused_at,
        )
        self.state = evolve_workflow(self.state, event)  # the fold replay uses
        self.events.append(event)
        return self.state

    def send(self, command: Command) -> None:
        self.sent.append(command)


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
        _arm_triggers(d, before)
    # A new version may bring a larger limit: whoever waited for it starts now.
    _admit_queued(d)


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
        _arm_triggers(d, before)


def _deactivate(d: WorkflowDraft, c: DeactivateWorkflow) -> None:
    s = _versions(d)
    if s.active_version is not None:
        before = s.active_version
        d.emit(WorkflowDeactivated(s.active_version))
        _arm_triggers(d, before)


def _arm_triggers(d: WorkflowDraft, before: int | None) -> None:
    """The active version changed (from `before`): schedule its time triggers (the fold
    dropped the old ones), and tell every signal named by the old or the new version's
    signal triggers what the workflow now listens for there (nothing, once deactivated)."""
    s = d.state
    assert s is not None
    new = None if s.active_version is None else load_workflow(s.definitions[s.active_version])
    if new is not None:
        assert s.active_version is not None
        for index, trigger in enumerate(new.time_triggers):
            at = next_time(trigger, new.time_zone, d.now)
            fire_at = at + jitter_of(trigger, s.workflow_id, index, at)
            d.emit(TimeTriggerScheduled(s.active_version, index, at, fire_at))
    names: dict[str, list[Any]] = {}
    if before is not None:
        for old in load_workflow(s.definitions[before]).signal_triggers:
            names.setdefault(old.name, [])
    for index, on_signal in enumerate(new.signal_triggers if new is not None else ()):
        match = json.loads(match_to_json(on_signal.evaluated()))
        names.setdefault(on_signal.name, []).append([index, match, list(on_signal.dedup)])
    for name, triggers in sorted(names.items()):
        d.send(SetSignalTriggers(name, s.workflow_id, json.dumps(triggers)))


def derived_instance_id(workflow_id: str, cause: str) -> str:
    """A top-level instance id (`<workflow id>~<32 hex>`, see ROUTE_SEPARATOR) derived from
    what started it: a decision replayed names the same instance, which starts once."""
    digest = hashlib.sha256(f"{workflow_id}\0{cause}".encode()).hexdigest()[:32]
    return f"{workflow_id}{ROUTE_SEPARATOR}{digest}"


def _fire_timers(d: WorkflowDraft, c: FireWorkflowTimers) -> None:
    """Each time trigger that is due fires once: it records the firing with the next time,
    and starts the active version (through the run strategy, like any start)."""
    s = d.state
    if s is None or s.active_version is None or not s.cron:
        return
    version = s.active_version
    definition = s.definitions[version]
    wf = load_workflow(definition)
    for index, (scheduled_for, fire_at) in sorted(s.cron.items()):
        if fire_at > d.now:
            continue
        trigger = wf.time_triggers[index]
        # The next time after now: times missed while no engine ran are skipped, not
        # caught up (one late firing stands for them).
        nxt = next_time(trigger, wf.time_zone, d.now)
        iid = derived_instance_id(s.workflow_id, f"cron\0{index}\0{scheduled_for}")
        jitter = jitter_of(trigger, s.workflow_id, index, nxt)
        d.emit(TimeTriggerFired(version, index, scheduled_for, iid, nxt, nxt + jitter))
        d.send(
            StartInstance(
                instance_id=iid,
                workflow_id=s.workflow_id,
                version=version,
                definition=definition,
                params="{}",
                initiator=f"cron:{trigger.cron}",
                idempotency_key=None,
                admitted=False,
            )
        )


def _trigger_instance(d: WorkflowDraft, c: TriggerInstance) -> None:
    """A signal trigger matched: start the active version with the signal's params that the
    workflow declares. Params it cannot take are rejected (the command is dead-lettered with
    the reason), never dropped silently."""
    s = d.state
    if s is None or s.active_version is None:
        return  # deactivated since: its triggers are being withdrawn
    definition = s.definitions[s.active_version]
    wf = load_workflow(definition)
    params = trigger_params(wf.params, json.loads(c.params))
    try:
        check_overrides(wf, params)
    except DefinitionError as err:
        raise Rejected(f"signal trigger of {s.workflow_id!r}: {err}") from None
    d.send(
        StartInstance(
            instance_id=c.instance_id,
            workflow_id=s.workflow_id,
            version=s.active_version,
            definition=definition,
            params=dumps(params),
            initiator=c.initiator,
            idempotency_key=None,
            admitted=False,
        )
    )


def next_workflow_deadline(state: WorkflowState) -> int | None:
    """The earliest time at which `FireWorkflowTimers` has something to do."""
    return min((fire_at for _, fire_at in state.cron.values()), default=None)


def _strategy(d: WorkflowDraft, definition: str | None = None) -> RunStrategy:
    """The latest version's run strategy; for a workflow never pushed, the start's own."""
    if d.state is not None and d.state.run_strategy is not None:
        return d.state.run_strategy
    if definition is not None:
        return load_workflow(definition).run_strategy
    return RunStrategy()


def _known(d: WorkflowDraft, instance_id: str) -> bool:
    s = d.state
    return s is not None and (
        instance_id in s.running or any(q.instance_id == instance_id for q in s.queue)
    )


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
    _admit_queued(d, strategy)


def _admit_queued(d: WorkflowDraft, strategy: RunStrategy | None = None) -> None:
    """Admit from the head of the queue while the strategy has room."""
    while d.state is not None and d.state.queue and d.state.blocked_by is None:
        s = d.state
        head = s.queue[0]
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
        _admit_queued(d)
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
    if any(q.instance_id == c.instance_id for q in s.queue):
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
    _admit_queued(d)


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


_RULES: dict[type, Callable[[WorkflowDraft, Any], None]] = {
    PushWorkflow: _push,
    ActivateWorkflow: _activate,
    DeactivateWorkflow: _deactivate,
    QueueInstance: _queue,
    NoteInstanceStatus: _note,
    DequeueInstance: _dequeue,
    UnblockWorkflow: _unblock,
    StartChild: _start_child,
    FireWorkflowTimers: _fire_timers,
    TriggerInstance: _trigger_instance,
    SetWorkflowBreakpoint: _set_breakpoint,
}


def decide_for_workflow(
    state: WorkflowState | None, command: WorkflowCommand, now: int, caused_at: int | None = None
) -> WorkflowDraft:
    """The workflow aggregate's rules: the draft holds the events (already folded into its
    state) and the commands they send."""
    handler = _RULES.get(type(command))
    if handler is None:
        raise TypeError(f"no workflow rule for {type(command).__name__}")
    nul = nul_field(command)
    if nul is not None:
        raise Rejected(f"{nul}: {NUL_MESSAGE}")
    d = WorkflowDraft(state, command.workflow_id, now, caused_at)
    handler(d, command)
    return d
