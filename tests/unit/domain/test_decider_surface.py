"""The domain's door for the processes: its public names are pinned, and every aggregate it
lists owns disjoint commands and events (one aggregate decides each command, folds each
event), so the engine's one generic path reaches every rule."""

from __future__ import annotations

from services.domain import decider
from services.domain.protocol.commands import WIRE_COMMANDS
from services.domain.protocol.events import EVENT_TYPES


def test_the_decider_exposes_exactly_its_pinned_names() -> None:
    assert sorted(decider.__all__) == [
        "AGGREGATES",
        "Aggregate",
        "Decision",
        "ENGINE_WORKER",
        "INSTANCE",
        "InstanceState",
        "SIGNAL",
        "WORKFLOW",
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
    assert all(hasattr(decider, name) for name in decider.__all__)


def test_each_command_and_each_event_belongs_to_exactly_one_aggregate() -> None:
    commands = [t for a in decider.AGGREGATES for t in a.command_types]
    events = [t for a in decider.AGGREGATES for t in a.event_types]
    assert len(commands) == len(set(commands))
    assert len(events) == len(set(events))
    assert set(WIRE_COMMANDS) <= set(commands)
    assert set(events) == set(EVENT_TYPES)
