"""A signal name's aggregate state, as folded from its events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import immutables

from services.domain.language.signal_specs import Match


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
    # Persistent maps: a fold of n signals stays O(n log n). request id -> signal_seq.
    request_ids: immutables.Map[str, int] = field(default_factory=immutables.Map)
    waits: immutables.Map[WaitKey, tuple[tuple[int, Match], ...]] = field(
        default_factory=immutables.Map
    )
    # Signal triggers on this name, by workflow: (trigger index, match, dedup param names).
    triggers: Mapping[str, tuple[tuple[int, Match, tuple[str, ...]], ...]] = field(
        default_factory=dict
    )
    # Dedup keys of the starts triggers made -> the instance each started.
    trigger_keys: immutables.Map[str, str] = field(default_factory=immutables.Map)
