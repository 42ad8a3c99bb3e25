"""Given/when/then helpers for the decider: histories are lists of events."""

from __future__ import annotations

from collections import deque
from typing import Any

from services.domain.decider import AGGREGATES, INSTANCE, SIGNAL, WORKFLOW, aggregate_of, decide
from services.domain.instance.evolve import fold
from services.domain.instance.state import InstanceState
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    Command,
    StartInstance,
)
from services.domain.protocol.events import Event, EventPayload
from services.domain.signal.state import SignalState
from services.domain.workflow.state import WorkflowState

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
        new = decide(self.state, command, at).events
        self.events.extend(new)
        return [e.payload for e in new]

    def types(self, command: Command, at: int = 0) -> list[str]:
        return [type(p).__name__ for p in self.when(command, at)]


class World:
    """Every aggregate, of every workflow, decided through the decider's one door: a command
    is decided on its aggregate, then the commands that decision sends, in order, as a shard
    does for its own partition. `log` holds `<aggregate id> <event type>` lines in decision
    order."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {a.name: {} for a in AGGREGATES}
        self.events: dict[str, list[Event]] = {}  # by instance id
        # Every aggregate's history, by (aggregate name, key), in decision order.
        self.histories: dict[tuple[str, str], list[Event]] = {}
        self.log: list[str] = []
        self.now = 0  # the decisions' time, UTC microseconds: tests move it forward

    @property
    def workflows(self) -> dict[str, WorkflowState]:
        return self.states[WORKFLOW.name]

    @property
    def instances(self) -> dict[str, InstanceState]:
        return self.states[INSTANCE.name]

    @property
    def signals(self) -> dict[str, SignalState]:
        return self.states[SIGNAL.name]

    def when(self, command: Command) -> list[str]:
        start = len(self.log)
        queue: deque[Command] = deque([command])
        while queue:
            c = queue.popleft()
            aggregate = aggregate_of(c)
            states = self.states[aggregate.name]
            key = aggregate.command_key(c)
            d = decide(states.get(key), c, self.now)
            if d.state is not None:
                states[key] = d.state
            self.histories.setdefault((aggregate.name, key), []).extend(d.events)
            for e in d.events:
                if e.instance_id is not None:
                    self.events.setdefault(e.instance_id, []).append(e)
            self.log += [f"{e.key} {e.type}" for e in d.events]
            queue.extend(d.sent)
        return self.log[start:]
