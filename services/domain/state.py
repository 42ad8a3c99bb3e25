"""In-memory state of one aggregate, as folded from its events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import immutables

from services.domain.definition import RunStrategy, Workflow, load_workflow
from services.domain.events import InstanceQueued
from services.domain.signal_specs import Match
from services.domain.statuses import FailureKind, InstanceStatus, StepStatus

# The outputs of ended iterations, newest first, as a persistent list: adding one shares
# the rest, so a loop of n iterations folds in O(n), not O(n^2). (index, outputs JSON).
Results = tuple[tuple[int, str], "Results"] | None


@dataclass(frozen=True, slots=True)
class LoopState:
    """The iterations of a loop step's current attempt."""

    items: tuple[Any, ...] | None  # foreach: what it iterates over; while: None
    started: int = 0  # iterations started (the next one's index)
    running: frozenset[int] = frozenset()
    counts: Mapping[str, int] = field(default_factory=dict)  # ended iterations by status
    results: Results = None
    results_bytes: int = 0
    results_truncated: bool = False  # some outputs were left out: they no longer fit
    last_outputs: str = "{}"  # the last ended iteration's outputs (while: `iteration.outputs`)
    first_failure: str | None = None  # why the first iteration that did not succeed ended

    @property
    def ended(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.ended - self.counts.get(InstanceStatus.SUCCEEDED.value, 0)


@dataclass(frozen=True, slots=True)
class StepState:
    status: StepStatus = StepStatus.NOT_CREATED
    attempt: int = 0  # the newest attempt's number; attempts count on across runs
    user_failures: int = 0  # failures per class in the current run, against the retry limits
    platform_failures: int = 0
    timeout_failures: int = 0
    retry_at: int | None = None
    timeout_at: int | None = None
    wake_at: int | None = None
    outputs: str | None = None  # JSON of the succeeded attempt's outputs, for expressions
    released: bool = False  # resumed at its breakpoint: it starts without pausing again
    signal_wait: int | None = None  # waiting for signals: the wait's id (its event's seq)
    signals_matched: frozenset[int] = frozenset()  # the dependencies met so far
    signals_met: bool = False  # every dependency met, or bypassed: it starts without waiting
    loop: LoopState | None = None  # a loop step: its attempt's iterations

    def failures(self, kind: FailureKind) -> int:
        if kind is FailureKind.USER:
            return self.user_failures
        if kind is FailureKind.PLATFORM:
            return self.platform_failures
        return self.timeout_failures


@dataclass(frozen=True, slots=True)
class InstanceState:
    instance_id: str
    workflow_id: str
    version: int
    definition: str
    params: str
    run: int
    status: InstanceStatus
    timeout_at: int
    seq: int
    steps: Mapping[str, StepState]
    initiator: str = ""
    started_at: int = 0  # the first run's start (UTC micros): the run date built-ins
    run_started_at: int = 0
    failed_steps: tuple[str, ...] = ()
    breakpoints: frozenset[str] = frozenset()  # steps that pause before they start
    # … and those of its workflow's breakpoints that name its steps or its loops' (see
    # breakpoints.py): a step pauses if either set names it.
    workflow_breakpoints: frozenset[str] = frozenset()
    parent_instance_id: str | None = None  # a child: reports its end to this instance's
    parent_step_id: str | None = None  # ... subworkflow step
    parent_attempt: int = 0
    depth: int = 0  # nesting depth of subworkflows and loops (0: top level)
    loop: str | None = None  # an iteration of a loop step: its `iteration` value (JSON)

    @property
    def workflow(self) -> Workflow:
        return load_workflow(self.definition)

    def pauses_at(self, step_id: str) -> bool:
        """A breakpoint, its own or its workflow's, names the step."""
        return step_id in self.breakpoints or step_id in self.workflow_breakpoints


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
    queue: tuple[InstanceQueued, ...] = ()  # the waiting starts, first in first out
    blocked_by: str | None = None  # STRICT_SEQUENTIAL: the failed run the queue waits on
    # Every version's definition (canonical JSON), for child instances started by other
    # workflows' subworkflow steps.
    definitions: Mapping[int, str] = field(default_factory=dict)
    # The active version's time triggers: index -> (cron time, fire time), UTC micros.
    cron: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    # Step ids every instance pauses at (set by API, for all versions; see breakpoints.py).
    breakpoints: frozenset[str] = frozenset()


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
