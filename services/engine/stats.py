"""What the engine's loop spends its time on, logged every STATS_INTERVAL_S while it works.

One line an interval: loops, commands decided, transactions, and the mean and max time of a
fetch wait, of deciding and of committing. It answers "where does a step's latency go" on a
live system without a profiler (and without the profiler's distortion of a busy machine).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("services.engine.stats")

STATS_INTERVAL_S = 10.0


@dataclass
class _Span:
    n: int = 0
    total: float = 0.0
    max: float = 0.0

    def add(self, seconds: float) -> None:
        self.n += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def text(self) -> str:
        mean = self.total / self.n * 1000 if self.n else 0.0
        return f"{mean:.1f}/{self.max * 1000:.0f} ms"


@dataclass
class LoopStats:
    loops: int = 0
    commands: int = 0
    transactions: int = 0
    fetch: _Span = field(default_factory=_Span)
    decide: _Span = field(default_factory=_Span)
    commit: _Span = field(default_factory=_Span)
    started: float = field(default_factory=time.monotonic)

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self.started < STATS_INTERVAL_S:
            return
        if self.commands or self.transactions:
            log.info(
                "last %.0fs: %d loops, %d commands, %d transactions; mean/max fetch %s,"
                " decide %s, commit %s",
                now - self.started,
                self.loops,
                self.commands,
                self.transactions,
                self.fetch.text(),
                self.decide.text(),
                self.commit.text(),
            )
        fresh = LoopStats(started=now)
        self.__dict__.update(fresh.__dict__)
