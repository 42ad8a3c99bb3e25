"""An instance's in-memory state, as folded from its events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.domain.kernel.statuses import FailureKind, InstanceStatus, StepStatus
from services.domain.language.workflow import Workflow, load_workflow

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
