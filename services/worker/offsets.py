"""Per-partition offset tracking for at-least-once task delivery."""

from __future__ import annotations


class PartitionOffsets:
    """The tasks of one partition not yet finished, in offset order.

    The committable position is the lowest unfinished offset, or one past the highest
    offset seen when all are finished.
    """

    __slots__ = ("committed", "next_offset", "pending")

    def __init__(self) -> None:
        self.pending: dict[int, bool] = {}  # offset -> finished; insertion order = offset order
        self.next_offset = -1
        self.committed = -1

    def start(self, offset: int) -> None:
        self.pending[offset] = False
        self.next_offset = offset + 1

    def finish(self, offset: int) -> bool:
        """Mark ``offset`` finished; True if the committable position moved."""
        if offset not in self.pending:
            return False
        self.pending[offset] = True
        if next(iter(self.pending)) != offset:
            return False
        done = []
        for off, finished in self.pending.items():
            if not finished:
                break
            done.append(off)
        for off in done:
            del self.pending[off]
        return True

    def committable(self) -> int:
        return next(iter(self.pending)) if self.pending else self.next_offset
