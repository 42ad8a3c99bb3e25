"""The one door of the domain for the processes: every aggregate type, and one way to decide
and fold any of them.

The engine decides a command with `decide` (which finds the command's aggregate) and folds
the log with `evolve` (which finds the event's); a new aggregate is one more entry in
`AGGREGATES`. The names below are the domain's public surface (a test pins them).
"""

from __future__ import annotations

from typing import Any

from services.domain.instance.decide import RULES as INSTANCE_RULES
from services.domain.instance.decide import decide_instance
from services.domain.instance.draft import ENGINE_WORKER
from services.domain.instance.evolve import FOLDS, evolve_instance, fold
from services.domain.instance.scheduler import next_deadline
from services.domain.instance.snapshot import restore_instance, snapshot_instance
from services.domain.instance.state import InstanceState
from services.domain.kernel.statuses import StepStatus
from services.domain.language.steps import ENGINE_STEP_TYPES
from services.domain.protocol.aggregate import Aggregate, Decision
from services.domain.protocol.commands import (
    SIGNAL_COMMANDS,
    WORKFLOW_COMMANDS,
    Command,
    FireTimers,
    FireWorkflowTimers,
)
from services.domain.protocol.events import SIGNAL_EVENT_TYPES, WORKFLOW_EVENT_TYPES, Event
from services.domain.signal.decide import decide_signal
from services.domain.signal.evolve import evolve_signal
from services.domain.signal.snapshot import restore_signal, snapshot_signal
from services.domain.signal.state import SignalState
from services.domain.workflow.decide import decide_workflow
from services.domain.workflow.evolve import evolve_workflow
from services.domain.workflow.snapshot import restore_workflow, snapshot_workflow
from services.domain.workflow.state import WorkflowState
from services.domain.workflow.timers import next_workflow_deadline

__all__ = [
    "AGGREGATES",
    "ENGINE_WORKER",
    "INSTANCE",
    "SIGNAL",
    "WORKFLOW",
    "Aggregate",
    "Decision",
    "InstanceState",
    "aggregate_of",
    "aggregate_of_event",
    "decide",
    "evolve",
    "fold",
    "handled_command_types",
    "handled_event_types",
    "next_deadline",
    "running_on_workers",
]


def _event_signal(e: Event) -> str:
    assert e.signal_name is not None
    return e.signal_name


def _event_instance(e: Event) -> str:
    assert e.instance_id is not None
    return e.instance_id


def running_on_workers(state: InstanceState) -> list[tuple[str, int]]:
    """The (step id, attempt) of each attempt a worker runs now (not the engine's own: a
    sleep, a subworkflow, a loop): those whose worker's silence the engine watches."""
    steps = state.workflow.dag.steps
    return [
        (sid, st.attempt)
        for sid, st in state.steps.items()
        if st.status is StepStatus.RUNNING and steps[sid].type not in ENGINE_STEP_TYPES
    ]


def finished(state: InstanceState) -> bool:
    """Ended, with no timer and no attempt left on a worker: no command can change it any
    more but a restart (the engine archives it, see services/engine/archive.py)."""
    return (
        state.status.is_terminal and next_deadline(state) is None and not running_on_workers(state)
    )


WORKFLOW: Aggregate[WorkflowState] = Aggregate(
    name="workflow",
    command_types=WORKFLOW_COMMANDS,
    event_types=WORKFLOW_EVENT_TYPES,
    command_key=lambda c: c.workflow_id,
    event_key=lambda e: e.workflow_id,
    decide=decide_workflow,
    evolve=evolve_workflow,
    deadline=next_workflow_deadline,
    snapshot=snapshot_workflow,
    restore=restore_workflow,
    timer=FireWorkflowTimers,
)
INSTANCE: Aggregate[InstanceState] = Aggregate(
    name="instance",
    command_types=tuple(INSTANCE_RULES),
    event_types=tuple(FOLDS),
    command_key=lambda c: c.instance_id,
    event_key=_event_instance,
    decide=decide_instance,
    evolve=evolve_instance,
    deadline=next_deadline,
    snapshot=snapshot_instance,
    restore=restore_instance,
    timer=FireTimers,
    evictable=finished,
)
SIGNAL: Aggregate[SignalState] = Aggregate(
    name="signal",
    command_types=SIGNAL_COMMANDS,
    event_types=SIGNAL_EVENT_TYPES,
    command_key=lambda c: c.signal_name,
    event_key=_event_signal,
    decide=decide_signal,
    evolve=evolve_signal,
    deadline=lambda s: None,  # a signal keeps no timer
    snapshot=snapshot_signal,
    restore=restore_signal,
)
# In this order the engine fires due timers (a workflow's before its instances').
AGGREGATES: tuple[Aggregate[Any], ...] = (WORKFLOW, INSTANCE, SIGNAL)

_BY_COMMAND: dict[type, Aggregate[Any]] = {t: a for a in AGGREGATES for t in a.command_types}
_BY_EVENT: dict[type, Aggregate[Any]] = {t: a for a in AGGREGATES for t in a.event_types}


def aggregate_of(command: Command) -> Aggregate[Any]:
    """The aggregate type that decides `command`; TypeError when none does (a bug)."""
    aggregate = _BY_COMMAND.get(type(command))
    if aggregate is None:
        raise TypeError(f"no rule for {type(command).__name__}")
    return aggregate


def aggregate_of_event(event: Event) -> Aggregate[Any]:
    aggregate = _BY_EVENT.get(type(event.payload))
    if aggregate is None:
        raise TypeError(f"{event.type} belongs to no aggregate")
    return aggregate


def decide(state: Any, command: Command, now: int, caused_at: int | None = None) -> Decision[Any]:
    """What `command` decides at `now` on its aggregate's `state` (None: it does not exist
    yet). `caused_at` (the command's issue time on its sender's clock) is stamped on the
    events as metadata."""
    return aggregate_of(command).decide(state, command, now, caused_at)


def evolve(state: Any, event: Event) -> Any:
    """The state of the event's aggregate after it (the fold replay and recovery use)."""
    return aggregate_of_event(event).evolve(state, event)


def handled_command_types() -> frozenset[type]:
    return frozenset(_BY_COMMAND)


def handled_event_types() -> frozenset[type]:
    return frozenset(_BY_EVENT)
