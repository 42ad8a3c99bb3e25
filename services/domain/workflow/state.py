"""The workflow aggregate's state, as folded from its events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import immutables

from services.domain.kernel.fifo import Fifo
from services.domain.language.workflow import RunStrategy
from services.domain.protocol.events import InstanceQueued


@dataclass(frozen=True, slots=True)
class WorkflowState:
    workflow_id: str
    latest_version: int  # 0: no version pushed (instances started from inline definitions)
    seq: int
    active_version: int | None = None
    run_strategy: RunStrategy | None = None  # the latest version's; None before any push
    # Admitted instances that have not ended (keys; values unused). A persistent map: a fold of
    # n admissions stays O(n log n), where copying a frozenset each time made it O(n²).
    running: immutables.Map[str, None] = field(default_factory=immutables.Map)
    # The waiting starts, first in first out, by instance id: at most MAX_QUEUED (admission.py).
    queue: Fifo[InstanceQueued] = field(default_factory=Fifo)
    blocked_by: str | None = None  # STRICT_SEQUENTIAL: the failed run the queue waits on
    # Every version's definition (canonical JSON), for child instances started by other
    # workflows' subworkflow steps.
    definitions: Mapping[int, str] = field(default_factory=dict)
    # The active version's time triggers: index -> (cron time, fire time), UTC micros.
    cron: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    # Step ids every instance pauses at (set by API, for all versions; see breakpoints.py).
    breakpoints: frozenset[str] = frozenset()
