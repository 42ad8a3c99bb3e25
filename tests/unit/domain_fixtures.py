"""Given/when/then helpers for the decider: histories are lists of events."""

from __future__ import annotations

from typing import Any

from services.domain.commands import Command, StartInstance
from services.domain.decide import decide
from services.domain.definition import parse_workflow
from services.domain.events import Event, EventPayload
from services.domain.evolve import fold
from services.domain.state import InstanceState

IID = "i-1"
S = 1_000_000  # one second in microseconds


def workflow_json(steps: list[dict[str, Any]], **fields: Any) -> str:
    return parse_workflow({"id": "wf", "steps": steps, **fields}).to_json()


def diamond(wf_fields: dict[str, Any] | None = None, **step_fields: Any) -> str:
    return workflow_json(
        [
            {"id": "a", "type": "noop", "next": ["b", "c"]},
            {"id": "b", "type": "shell", "command": "true", "next": ["d"], **step_fields},
            {"id": "c", "type": "noop", "next": ["d"]},
            {"id": "d", "type": "noop"},
        ],
        **(wf_fields or {}),
    )


def start(definition: str, params: str = "{}") -> StartInstance:
    return StartInstance(IID, "wf", 1, definition, params, "test", None)


class History:
    """given(events) / when(command, at) / then(payload list)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @property
    def state(self) -> InstanceState | None:
        return fold(self.events)

    def when(self, command: Command, at: int = 0) -> list[EventPayload]:
        new = decide(self.state, command, at)
        self.events.extend(new)
        return [e.payload for e in new]

    def types(self, command: Command, at: int = 0) -> list[str]:
        return [type(p).__name__ for p in self.when(command, at)]
