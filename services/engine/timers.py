"""The shard's timers: a heap of (due, key) with one live entry per key; an entry whose due
differs from the key's scheduled one is stale and skipped when popped."""

from __future__ import annotations

import heapq


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._scheduled: dict[str, int] = {}

    def schedule(self, key: str, due: int | None) -> None:
        if due is None:
            self._scheduled.pop(key, None)
            return
        if self._scheduled.get(key) != due:
            self._scheduled[key] = due
            heapq.heappush(self._heap, (due, key))
            if len(self._heap) > 2 * len(self._scheduled) + 1024:
                # Stale entries (superseded deadlines) leave only when due, which can be days
                # away: rebuild from the live ones before they pile up.
                self._heap = [(d, k) for k, d in self._scheduled.items()]
                heapq.heapify(self._heap)

    def next_due(self) -> int | None:
        while self._heap and self._scheduled.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> list[str]:
        """The keys whose time has come (each then has no timer until scheduled again)."""
        keys: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._scheduled.get(key) == due:
                del self._scheduled[key]
                keys.append(key)
        return keys
