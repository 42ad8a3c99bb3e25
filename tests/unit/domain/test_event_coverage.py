"""Every event type is folded by evolve, and every wire command has a rule in decide."""

from __future__ import annotations

from services.domain.decider import handled_command_types, handled_event_types
from services.domain.protocol.commands import WIRE_COMMANDS
from services.domain.protocol.events import EVENT_TYPES


def test_every_event_type_has_an_evolve_case() -> None:
    assert set(EVENT_TYPES) == set(handled_event_types())


def test_every_wire_command_has_a_decide_rule() -> None:
    assert set(WIRE_COMMANDS) <= handled_command_types()
