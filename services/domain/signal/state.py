"""A signal name's aggregate state, as folded from its events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import immutables

from services.domain.kernel.window import DedupWindow, WindowBound
from services.domain.language.signal_specs import Match

# A request id is remembered for at least 24 hours, or the last 100,000 signals of the name if
# they come faster: a client retries within minutes, and a signal name's state stays bounded.
REQUEST_ID_WINDOW = WindowBound(span_us=24 * 3600 * 1_000_000, max_keys=100_000)
# A trigger's dedup key is remembered for at least 30 days, or the last 100,000 starts its name
# triggered: the same values arriving again within that window start nothing.
TRIGGER_KEY_WINDOW = WindowBound(span_us=30 * 24 * 3600 * 1_000_000, max_keys=100_000)


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """One received signal, as dependencies match it."""

    seq: int
    params: Mapping[str, Any]
    params_json: str


# A wait: (instance id, step id, wait); it holds (dependency index, match) per dependency.
WaitKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class SignalState:
    """A signal name's aggregate: the signals received (the newest, for dependencies that
    come later), the request ids seen (dedup), and the steps waiting for one."""

    name: str
    seq: int
    count: int = 0  # signals received: the last one's signal_seq
    recent: tuple[SignalRecord, ...] = ()  # newest last, at most MAX_RECENT_SIGNALS
    # request id -> signal_seq, within REQUEST_ID_WINDOW.
    request_ids: DedupWindow[int] = field(default_factory=DedupWindow)
    # Persistent maps: a fold of n signals stays O(n log n).
    waits: immutables.Map[WaitKey, tuple[tuple[int, Match], ...]] = field(
        default_factory=immutables.Map
    )
    # Signal triggers on this name, by workflow: (trigger index, match, dedup param names).
    triggers: Mapping[str, tuple[tuple[int, Match, tuple[str, ...]], ...]] = field(
        default_factory=dict
    )
    # Dedup keys of the starts triggers made -> the instance each started, within
    # TRIGGER_KEY_WINDOW.
    trigger_keys: DedupWindow[str] = field(default_factory=DedupWindow)
