"""Given/when/then helpers for the decider: histories are lists of events."""

from __future__ import annotations

from collections import deque
from typing import Any

from services.domain.commands import (
    Command,
    StartInstance,
    is_signal_command,
    is_workflow_command,
)
from services.domain.decide import decide, decide_instance
from services.domain.definition import parse_workflow
from services.domain.events import Event, EventPayload
from services.domain.evolve import fold
from services.domain.signals import decide_for_signal
from services.domain.state import InstanceState, SignalState, WorkflowState
from services.domain.workflows import decide_for_workflow

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


class World:
    """Every aggregate, of every workflow: a command is decided on its aggregate, then the
    commands that decision sends, in order, as a shard does for its own partition. `log`
    holds `<aggregate id> <event type>` lines in decision order."""

    def __init__(self) -> None:
        self.workflows: dict[str, WorkflowState] = {}
        self.instances: dict[str, InstanceState] = {}
        self.signals: dict[str, SignalState] = {}
        self.events: dict[str, list[Event]] = {}  # by instance id
        self.log: list[str] = []

    def when(self, command: Command) -> list[str]:
        start = len(self.log)
        queue: deque[Command] = deque([command])
        while queue:
            c = queue.popleft()
            if is_workflow_command(c):
                wd = decide_for_workflow(self.workflows.get(c.workflow_id), c, 0)
                if wd.state is not None:
                    self.workflows[c.workflow_id] = wd.state
                self.log += [f"{c.workflow_id} {e.type}" for e in wd.events]
                queue.extend(wd.sent)
            elif is_signal_command(c):
                sd = decide_for_signal(self.signals.get(c.signal_name), c, 0)
                if sd.state is not None:
                    self.signals[c.signal_name] = sd.state
                self.log += [f"signal:{c.signal_name} {e.type}" for e in sd.events]
                queue.extend(sd.sent)
            else:
                d = decide_instance(self.instances.get(c.instance_id), c, 0)
                if d.state is not None:
                    self.instances[c.instance_id] = d.state
                self.events.setdefault(c.instance_id, []).extend(d.events)
                self.log += [f"{c.instance_id} {e.type}" for e in d.events]
                queue.extend(d.sent)
        return self.log[start:]
