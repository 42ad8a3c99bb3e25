"""A persistent first-in-first-out queue of values with unique keys.

A workflow's run-strategy queue was a tuple: appending copied it, and removing an admitted or
dequeued start scanned it, so folding n starts was O(n²) and looking one up O(n). Here values
sit at increasing positions in a persistent map, with their keys' positions beside: append,
lookup by key and removal anywhere are O(log n), and the first value is found by moving `head`
past the positions already removed (each position is passed once in a fold).

Equality is by the values in order, not by positions: a queue restored from a snapshot (its
positions renumbered from 0) equals the queue the fold made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import immutables

V = TypeVar("V")


@dataclass(frozen=True, slots=True, eq=False)
class Fifo(Generic[V]):
    items: immutables.Map[int, V] = field(default_factory=immutables.Map)
    positions: immutables.Map[str, int] = field(default_factory=immutables.Map)
    head: int = 0  # no item sits before it
    tail: int = 0  # the next item's position

    @classmethod
    def of(cls, values: Iterable[V], key: Callable[[V], str]) -> Fifo[V]:
        queue: Fifo[V] = cls()
        for value in values:
            queue = queue.append(key(value), value)
        return queue

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return len(self.items) > 0

    def __contains__(self, key: object) -> bool:
        return key in self.positions

    def __iter__(self) -> Iterator[V]:
        for position in sorted(self.items.keys()):
            yield self.items[position]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fifo) and len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-style equality: never a dict key

    def __repr__(self) -> str:
        return f"Fifo({list(self)!r})"

    def first(self) -> V | None:
        return self.items.get(self.head)

    def append(self, key: str, value: V) -> Fifo[V]:
        """This queue with `value` last; a key already queued keeps its place and value."""
        if key in self.positions:
            return self
        items = self.items.set(self.tail, value)
        return Fifo(items, self.positions.set(key, self.tail), self.head, self.tail + 1)

    def remove(self, key: str) -> Fifo[V]:
        """This queue without `key`'s value (the same queue when it holds none)."""
        position = self.positions.get(key)
        if position is None:
            return self
        items = self.items.delete(position)
        head = self.head
        while head < self.tail and head not in items:
            head += 1
        return Fifo(items, self.positions.delete(key), head, self.tail)
