"""The workflow language: a definition's model (its fields in fields.py, its steps in
steps.py), its validation, and its DAG.

A definition arrives as JSON or YAML text, is validated into a frozen `Workflow`, and is
stored in events as canonical JSON. Every fault is reported with the exact path of the
value at fault (`steps[3].retry_policy.user_limit`), so users can fix all faults at once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from services.domain.kernel.errors import DefinitionError
from services.domain.kernel.statuses import RunStrategyRule
from services.domain.language.dag import Dag, order_params, param_dependencies
from services.domain.language.fields import (
    DEFAULT_WORKFLOW_TIMEOUT_S,
    ID_PATTERN,
    MAX_STEPS,
    MAX_WORKFLOW_TIMEOUT_S,
    Duration,
    Model,
    Params,
    check_zone,
)
from services.domain.language.steps import STEP_TYPES, ForeachStep, Step, WhileStep
from services.domain.language.triggers import (
    MAX_SIGNAL_TRIGGERS,
    MAX_TIME_TRIGGERS,
    SignalTriggerSpec,
    TimeTrigger,
)

# PARALLEL's default and largest limit. Maestro caps it at 1,000; Baton's admission costs the
# same at any limit, so it allows more.
DEFAULT_PARALLEL = 20


MAX_PARALLEL = 100_000


class RunStrategy(Model):
    """How the workflow admits instances. Written as a rule name, or `{rule, max}` for PARALLEL."""

    rule: RunStrategyRule = RunStrategyRule.SEQUENTIAL
    max: int | None = Field(None, ge=0, le=MAX_PARALLEL)  # PARALLEL only; default 20

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"rule": data}
        if (
            isinstance(data, dict)
            and data.get("max") is not None
            and data.get("rule") != "PARALLEL"
        ):
            raise ValueError("max applies to the PARALLEL rule only")
        return data

    @property
    def limit(self) -> int:
        """How many instances may run at once."""
        if self.rule is not RunStrategyRule.PARALLEL:
            return 1
        return DEFAULT_PARALLEL if self.max is None else self.max


class Workflow(Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=10_000)
    tags: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=32)
    timeout: Duration = Field(DEFAULT_WORKFLOW_TIMEOUT_S, gt=0, le=MAX_WORKFLOW_TIMEOUT_S)
    # At most this many attempts of the instance in flight at once (Maestro: ≤ 1000).
    step_concurrency: int | None = Field(None, ge=1, le=1000)
    run_strategy: RunStrategy = Field(default_factory=RunStrategy)
    # The zone of the run date and hour built-ins (`instance.run_date`).
    time_zone: str = Field("UTC", max_length=64)
    params: Params = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    # What starts the active version by itself: cron times, and signals (see triggers.py).
    time_triggers: list[TimeTrigger] = Field(default_factory=list, max_length=MAX_TIME_TRIGGERS)
    signal_triggers: list[SignalTriggerSpec] = Field(
        default_factory=list, max_length=MAX_SIGNAL_TRIGGERS
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @functools.cached_property
    def dag(self) -> Dag:
        return Dag(self)

    @functools.cached_property
    def param_order(self) -> tuple[str, ...]:
        """The order in which the workflow's params are evaluated at start."""
        return order_params(param_dependencies(self.params, frozenset()))[0]

    @functools.cached_property
    def nested_step_ids(self) -> frozenset[str]:
        """The ids of its steps and of its loops' steps, at any depth: what a breakpoint set
        on the workflow names (an id used at two depths names both)."""
        return frozenset(_nested_ids(self.steps))

    @functools.cached_property
    def body_step_ids(self) -> dict[str, frozenset[str]]:
        """Per loop step, `nested_step_ids` of its body."""
        return {
            step.id: frozenset(_nested_ids(step.steps))
            for step in self.steps
            if isinstance(step, ForeachStep | WhileStep)
        }

    @functools.cached_property
    def bodies(self) -> dict[str, str]:
        """Per loop step, the definition each iteration runs (canonical JSON): the loop's
        steps, with the params they see declared (the workflow's and the loop step's). An
        iteration is started with those params evaluated, so the declarations only type them."""
        return {
            step.id: Workflow.model_validate(
                {
                    "id": self.id,
                    "timeout": self.timeout,
                    "time_zone": self.time_zone,
                    "params": {**self.params, **step.params},
                    "steps": step.steps,
                }
            ).to_json()
            for step in self.steps
            if isinstance(step, ForeachStep | WhileStep)
        }

    def to_json(self) -> str:
        """Canonical JSON: what events store, so equal definitions encode byte-identically."""
        return json.dumps(
            self.model_dump(mode="json", exclude_defaults=False, by_alias=True),
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        prev = loc[i - 1] if i else None
        # Pydantic puts the discriminator tag of a union member into the location; users
        # never wrote it, so it is dropped from the path.
        if isinstance(part, str) and (
            (isinstance(prev, int) and part in STEP_TYPES)
            or (prev == "backoff" and part in ("fixed", "exponential"))
            or part.startswith("function-")
        ):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_UNION_CHOICES = {
    "step": ", ".join(STEP_TYPES),
    "backoff": "fixed, exponential",
}


def model_faults(err: ValidationError) -> list[tuple[str, str]]:
    faults = []
    for e in err.errors(include_url=False):
        path = _path(tuple(e["loc"]))
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            choices = _UNION_CHOICES["backoff" if path.endswith("backoff") else "step"]
            tag = e["input"].get("type") if isinstance(e["input"], dict) else None
            msg = f"unknown type {tag!r}" if tag is not None else "missing type"
            msg += f"; expected one of {choices}"
            path = f"{path}.type"
        faults.append((path, msg))
    return faults


def _nested_ids(steps: list[Step]) -> list[str]:
    ids = []
    for step in steps:
        ids.append(step.id)
        if isinstance(step, ForeachStep | WhileStep):
            ids += _nested_ids(step.steps)
    return ids


def any_version_has_step(definitions: Iterable[str], step_id: str) -> bool:
    """A step id (at any depth of loops) of one of these stored definitions: what a
    breakpoint set on a workflow may name."""
    return any(step_id in load_workflow(text).nested_step_ids for text in definitions)


@functools.lru_cache(maxsize=4096)
def shared_definition(canonical_json: str) -> str:
    """One string for every equal definition text: the first seen. Each event and command
    decoded from Kafka brings its own copy of its definition (up to 256 KiB, often ~30 KiB);
    a state that keeps it (a live instance, a queued start, a version) keeps this one instead,
    so the instances of a version share one text in memory. An identity function behind
    `lru_cache`, which returns the cached key for an equal argument; not `sys.intern`, which
    would keep every text for ever."""
    return canonical_json


@functools.lru_cache(maxsize=4096)
def load_workflow(canonical_json: str) -> Workflow:
    """The definition stored in an event or a command. Cached: every instance of a version
    shares one. It was judged when pushed: loading it again builds the model, and does not
    judge its expressions again by today's rules (nor can it: a loop's body reads `iteration`)."""
    data = json.loads(canonical_json)
    if not isinstance(data, dict):
        raise DefinitionError([("", "a workflow definition must be an object")])
    try:
        return Workflow.model_validate(data)
    except ValidationError as err:
        raise DefinitionError(model_faults(err)) from None
