"""What one engine transaction writes besides the input offsets, already encoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from services.domain.protocol.events import Event
from services.domain.protocol.tasks import Task


@dataclass
class Outbox:
    """What one transaction writes besides the input offsets, already encoded."""

    events: list[tuple[Event, bytes]] = field(default_factory=list)
    cancellations: list[tuple[Event, bytes]] = field(default_factory=list)
    tasks: list[tuple[Task, bytes]] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[Any, Any], str]] = field(default_factory=list)
    # Commands for aggregates of other partitions: (partition, key, value).
    commands: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # Commands derived here whose decision failed: (key, value, reason).
    dead_derived: list[tuple[bytes, bytes, str]] = field(default_factory=list)
    # Definitions the events refer to by hash, not yet in baton.definitions: (hash, text).
    definitions: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.tasks or self.dead or self.commands or self.dead_derived)

    def __len__(self) -> int:
        return (
            len(self.events)
            + len(self.cancellations)
            + len(self.tasks)
            + len(self.dead)
            + len(self.commands)
            + len(self.dead_derived)
            + len(self.definitions)
        )

    def extend(self, later: Outbox) -> None:
        """Append what a later batch decided: one transaction then writes both, in order."""
        self.events.extend(later.events)
        self.cancellations.extend(later.cancellations)
        self.tasks.extend(later.tasks)
        self.dead.extend(later.dead)
        self.commands.extend(later.commands)
        self.dead_derived.extend(later.dead_derived)
        self.definitions.extend(later.definitions)
