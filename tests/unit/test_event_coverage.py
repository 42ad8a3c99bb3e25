"""Every event type is folded by evolve, and every wire command has a rule in decide."""

from __future__ import annotations

from services.domain.commands import WIRE_COMMANDS
from services.domain.decide import handled_command_types
from services.domain.events import EVENT_TYPES
from services.domain.evolve import handled_event_types


def test_every_event_type_has_an_evolve_case() -> None:
    assert set(EVENT_TYPES) == set(handled_event_types())


def test_every_wire_command_has_a_decide_rule() -> None:
    assert set(WIRE_COMMANDS) <= handled_command_types()
