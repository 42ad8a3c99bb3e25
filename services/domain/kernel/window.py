"""A dedup window: keys seen recently, kept for a bounded time and a bounded count.

An aggregate that deduplicates (a signal's request ids, the dedup keys of its triggers) cannot
keep every key for ever: its state, its snapshot and its fold would grow with the age of the
log. A window keeps two generations of keys, the current one (begun at `since`) and the one
before it. A key is looked up in both. When the current generation is `span_us` old or holds
`max_keys` keys, the next `add` makes it the previous one and drops the one before.

So a key is remembered for at least `span_us` after it was added, unless `max_keys` newer keys
came first, and the window never holds more than 2 x `max_keys` keys. Time is the events' time
(`occurred_at`): the fold stays a pure function of the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import immutables

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class WindowBound:
    """How long, and how many keys, a window remembers (see the module's docs)."""

    span_us: int
    max_keys: int


@dataclass(frozen=True, slots=True)
class DedupWindow(Generic[V]):
    # Persistent maps: a fold of n adds stays O(n log n), and snapshots share structure.
    current: immutables.Map[str, V] = field(default_factory=immutables.Map)
    previous: immutables.Map[str, V] = field(default_factory=immutables.Map)
    since: int = 0  # when `current` began, UTC microseconds; 0 before the first add

    def get(self, key: str) -> V | None:
        found = self.current.get(key)
        return self.previous.get(key) if found is None else found

    def __contains__(self, key: object) -> bool:
        return key in self.current or key in self.previous

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def add(self, key: str, value: V, at: int, bound: WindowBound) -> DedupWindow[V]:
        """This window with `key` -> `value` added at `at` (UTC microseconds)."""
        if len(self.current) >= bound.max_keys or at - self.since >= bound.span_us:
            return DedupWindow(immutables.Map({key: value}), self.current, at)
        return DedupWindow(self.current.set(key, value), self.previous, self.since)
