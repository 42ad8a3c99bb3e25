"""The workflow language: a definition's model, its validation, and its DAG.

A definition arrives as JSON or YAML text, is validated into a frozen `Workflow`, and is
stored in events as canonical JSON. Every fault is reported with the exact path of the
value at fault (`steps[3].retry_policy.user_limit`), so users can fix all faults at once.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from services.domain.dag import Dag, graph_faults, order_params, param_dependencies
from services.domain.expressions import MAX_SOURCE_CHARS, is_template, strings_in
from services.domain.params import ParamMode, ParamType, check_value, infer_type, normalise
from services.domain.statuses import FailureMode, RunStrategyRule

MAX_STEPS = 300
MAX_DEFINITION_BYTES = 1_000_000
# The stored (canonical) form travels in commands and events: bounded well under the broker's
# message size, so no definition can make a record Kafka refuses.
MAX_CANONICAL_BYTES = 512_000
DEFAULT_WORKFLOW_TIMEOUT_S = 10 * 86_400
MAX_WORKFLOW_TIMEOUT_S = 120 * 86_400
# Every duration (timeouts, sleeps, back-off) is finite and at most this.
MAX_DURATION_S = MAX_WORKFLOW_TIMEOUT_S
ENGINE_STEP_TYPES = frozenset({"sleep", "subworkflow", "foreach", "while"})
LOOP_STEP_TYPES = frozenset({"foreach", "while"})
# How deep subworkflows and loops may nest (Maestro's limit): a top-level instance is depth 0.
MAX_SUBWORKFLOW_DEPTH = 10
# foreach: iterations at most (Maestro's limit), iterations at once (default, at most).
MAX_ITERATIONS = 25_000
DEFAULT_LOOP_CONCURRENCY = 20
MAX_LOOP_CONCURRENCY = 500
# while: the default cap on iterations.
DEFAULT_MAX_WHILE_ITERATIONS = 100

_ID = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
_QUEUE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class DefinitionError(ValueError):
    """A definition or request is invalid; `faults` lists (path, message) pairs."""

    def __init__(self, faults: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in faults))
        self.faults = faults


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90`, `30s`, `1h30m`, `250ms`."""
    if isinstance(value, bool):
        raise ValueError("expected seconds as a number or a duration such as '30s', '1h30m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"invalid duration {value!r}; use e.g. '30s', '10m', '1h30m'")
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("expected seconds as a number or a duration such as '30s', '1h30m'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds, not negative")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration may be at most {MAX_DURATION_S // 86_400} days")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Param(_Model):
    """A literal `value` (whose strings may interpolate `${...}`) or a CEL `expression`."""

    type: ParamType
    value: Any = None
    expression: str | None = Field(None, min_length=1, max_length=MAX_SOURCE_CHARS)
    mode: Annotated[ParamMode, BeforeValidator(_upper)] = ParamMode.MUTABLE
    description: str | None = Field(None, max_length=10_000)

    @field_validator("value")
    @classmethod
    def _check(cls, value: Any, info: Any) -> Any:
        ptype = info.data.get("type")
        if ptype is None or value is None:
            return value
        fault = check_value(ptype, value)
        if fault:
            raise ValueError(fault)
        return normalise(ptype, value)

    @model_validator(mode="after")
    def _one_source(self) -> Param:
        if self.expression is not None and self.value is not None:
            raise ValueError("give either a value or an expression, not both")
        if self.expression is None and self.value is None:
            raise ValueError("give a value or an expression")
        if self.mode is ParamMode.CONSTANT and self.dynamic:
            raise ValueError("a CONSTANT param must be a plain literal (no expression, no ${...})")
        return self

    @property
    def dynamic(self) -> bool:
        """Evaluated when used (an expression or a template), rather than a plain literal."""
        return self.expression is not None or _has_template(self.value)


def _has_template(value: Any) -> bool:
    return any(is_template(text) for text, _ in strings_in(value, ""))


def _param_shorthand(value: Any) -> Any:
    if isinstance(value, dict | Param):
        return value
    ptype = infer_type(value)
    if ptype is None:
        raise ValueError("cannot infer the type of this value; write it as {type: ..., value: ...}")
    return {"type": ptype, "value": value}


ParamSpec = Annotated[Param, BeforeValidator(_param_shorthand)]
Params = Annotated[dict[str, ParamSpec], Field(max_length=500)]


class FixedBackoff(_Model):
    type: Literal["fixed"]
    user_seconds: Duration = 60.0
    platform_seconds: Duration = 60.0
    timeout_seconds: Duration = 60.0


class ExponentialBackoff(_Model):
    type: Literal["exponential"] = "exponential"
    base_seconds: Duration = 60.0
    exponent: float = Field(2.0, ge=1.0, le=10.0)
    user_max_seconds: Duration = 600.0
    platform_max_seconds: Duration = 3600.0
    timeout_max_seconds: Duration = 3600.0


class RetryPolicy(_Model):
    """Three separate retry budgets, as in Maestro: a user error never eats platform retries."""

    user_limit: int = Field(2, ge=0, le=99)
    platform_limit: int = Field(10, ge=0, le=99)
    timeout_limit: int = Field(0, ge=0, le=99)
    retryable: bool = True
    backoff: Annotated[FixedBackoff | ExponentialBackoff, Field(discriminator="type")] = (
        ExponentialBackoff()
    )


def _successor_shorthand(value: Any) -> Any:
    return {"step": value} if isinstance(value, str) else value


class Successor(_Model):
    """An edge to a successor, taken when the step ends well and `if` (CEL) holds."""

    step: str
    if_: str | None = Field(None, alias="if", min_length=1, max_length=MAX_SOURCE_CHARS)

    @property
    def condition(self) -> str | None:
        """The condition, or None for an unconditional edge (`"true"` counts as none)."""
        return None if self.if_ is None or self.if_.strip() == "true" else self.if_


class _StepBase(_Model):
    id: str = Field(pattern=_ID)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=10_000)
    tags: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=32)
    next: list[Annotated[Successor, BeforeValidator(_successor_shorthand)]] = Field(
        default_factory=list, max_length=MAX_STEPS
    )
    timeout: Duration | None = None
    failure_mode: Annotated[FailureMode, BeforeValidator(_upper)] = FailureMode.FAIL_AFTER_RUNNING
    retry_policy: RetryPolicy = RetryPolicy()
    params: Params = Field(default_factory=dict)
    queue: str = Field("default", pattern=_QUEUE)
    # Pause the step before each run of it starts, until the step is resumed (a breakpoint).
    breakpoint: bool = False


class NoopStep(_StepBase):
    type: Literal["noop"]


class SleepStep(_StepBase):
    """Runs in the engine as a durable timer; no worker sleeps."""

    type: Literal["sleep"]
    duration: Duration


class SubworkflowStep(_StepBase):
    """Runs another workflow as a child instance. The child gets the step's own `params`
    (evaluated like any step's) as its start params; with `sync` the step ends as the child
    ends (outputs: the child's step outputs by step id), otherwise as soon as it is started
    (outputs: its instance id). Stopping the step stops the child."""

    type: Literal["subworkflow"]
    workflow: str = Field(pattern=_ID)
    version: Annotated[int, Field(ge=1)] | Literal["default", "active", "latest"] = "default"
    sync: bool = True


# A loop is retried as a whole (every iteration again), so by default it is not: its
# iterations' own steps carry the retries.
_NO_RETRIES = RetryPolicy(user_limit=0, platform_limit=0)


class Range(_Model):
    """Integers from `start` up to `end` (excluded) by `step`; each a number or CEL."""

    start: int | Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_CHARS)] = 0
    end: int | Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_CHARS)]
    step: int | Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_CHARS)] = 1

    @model_validator(mode="after")
    def _nonzero(self) -> Range:
        if self.step == 0:
            raise ValueError("step may not be 0")
        return self


class ForeachStep(_StepBase):
    """Runs `steps` (an inline DAG) once per item of `items` (a list, or a CEL expression
    giving one) or of `range`, each iteration a child instance. Up to `concurrency`
    iterations run at once. The step's `params` are evaluated per iteration and may read
    `iteration.index` and `iteration.item`; the iteration's steps see them as params, and `iteration` too."""

    type: Literal["foreach"]
    items: list[Any] | Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_CHARS)] | None = (
        None
    )
    range: Range | None = None
    concurrency: int = Field(DEFAULT_LOOP_CONCURRENCY, ge=1, le=MAX_LOOP_CONCURRENCY)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    retry_policy: RetryPolicy = _NO_RETRIES

    @model_validator(mode="after")
    def _one_source(self) -> ForeachStep:
        if (self.items is None) == (self.range is None):
            raise ValueError("give either items or range")
        if isinstance(self.items, list) and len(self.items) > MAX_ITERATIONS:
            raise ValueError(f"at most {MAX_ITERATIONS} items")
        return self


class WhileStep(_StepBase):
    """Runs `steps` (an inline DAG) again and again, one iteration at a time, while
    `condition` (CEL, evaluated before each iteration) holds. The condition and the step's
    `params` read `iteration.index` (iterations done) and `iteration.outputs` (the last iteration's
    outputs, by step id). Still true after `max_iterations`: the step fails."""

    type: Literal["while"]
    condition: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)
    max_iterations: int = Field(DEFAULT_MAX_WHILE_ITERATIONS, ge=1, le=MAX_ITERATIONS)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    retry_policy: RetryPolicy = _NO_RETRIES


class ShellStep(_StepBase):
    """`command` runs under /bin/sh; params reach it only as environment variables."""

    type: Literal["shell"]
    command: str = Field(min_length=1, max_length=100_000)


class PythonStep(_StepBase):
    """`function` is `module:function`, called with the params as keyword arguments."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
MAX_RESPONSE_BYTES = 200 * 1024  # the response body kept in outputs (a step's outputs ≤ 256 KiB)


class HttpStep(_StepBase):
    """An HTTP request from a worker. `url`, header values and string parts of `body` may hold
    `${...}` over the attempt's params. Only hosts the worker allows are reachable."""

    type: Literal["http"]
    url: str = Field(min_length=1, max_length=8192)
    method: Annotated[HttpMethod, BeforeValidator(_upper)] = "GET"
    headers: dict[Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")], str] = (
        Field(default_factory=dict, max_length=64)
    )
    body: str | dict[str, Any] | list[Any] | None = None  # a string as is; JSON otherwise
    # Statuses that mean success; empty: any 2xx.
    expected_statuses: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, max_length=64
    )
    max_response_bytes: int = Field(64 * 1024, ge=0, le=MAX_RESPONSE_BYTES)


class SqlStep(_StepBase):
    """One SQL statement on a PostgreSQL connection the worker knows by name. `args` are bound
    as $1, $2 … (never spliced into the text); their strings may hold `${...}`."""

    type: Literal["sql"]
    connection: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    statement: str = Field(min_length=1, max_length=100_000)
    args: list[Any] = Field(default_factory=list, max_length=100)
    max_rows: int = Field(1000, ge=0, le=10_000)
    read_only: bool = True  # runs in a READ ONLY transaction unless false


Step = Annotated[
    NoopStep
    | SleepStep
    | ShellStep
    | PythonStep
    | HttpStep
    | SqlStep
    | SubworkflowStep
    | ForeachStep
    | WhileStep,
    Field(discriminator="type"),
]
LoopStep = ForeachStep | WhileStep
ForeachStep.model_rebuild()
WhileStep.model_rebuild()


# PARALLEL's default and largest limit. Maestro caps it at 1,000; Baton's admission costs the
# same at any limit, so it allows more.
DEFAULT_PARALLEL = 20
MAX_PARALLEL = 100_000


class RunStrategy(_Model):
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


class Workflow(_Model):
    id: str = Field(pattern=_ID)
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

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Amsterdam'"
            ) from None
        return value

    @functools.cached_property
    def dag(self) -> Dag:
        return Dag(self)

    @functools.cached_property
    def param_order(self) -> tuple[str, ...]:
        """The order in which the workflow's params are evaluated at start."""
        return order_params(param_dependencies(self.params, frozenset()))[0]

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


STEP_TYPES = (
    "noop",
    "sleep",
    "shell",
    "python",
    "http",
    "sql",
    "subworkflow",
    "foreach",
    "while",
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


def _faults(err: ValidationError) -> list[tuple[str, str]]:
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


def parse_workflow(data: Any) -> Workflow:
    """Validate a decoded definition; raises DefinitionError listing every fault."""
    if not isinstance(data, dict):
        raise DefinitionError([("", "a workflow definition must be an object")])
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as err:
        raise DefinitionError(_faults(err)) from None
    faults = graph_faults(wf)
    if faults:
        raise DefinitionError(faults)
    # Imported here: the analysis needs the model above, and the model needs nothing of it.
    from services.domain.analysis import expression_faults

    faults = expression_faults(wf)
    if faults:
        raise DefinitionError(faults)
    size = len(wf.to_json().encode())
    if size > MAX_CANONICAL_BYTES:
        raise DefinitionError(
            [
                (
                    "",
                    f"the definition is {size} bytes in canonical form; at most {MAX_CANONICAL_BYTES}",
                )
            ]
        )
    return wf


def parse_workflow_text(text: str | bytes) -> Workflow:
    """Parse JSON or YAML text (YAML is a superset of JSON) and validate it."""
    if len(text) > MAX_DEFINITION_BYTES:
        raise DefinitionError([("", f"a definition may be at most {MAX_DEFINITION_BYTES} bytes")])
    try:
        # JSON first: YAML 1.1 would read some valid JSON differently (1e300 is a string there).
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise DefinitionError([("", f"not valid JSON or YAML: {err}")]) from None
    return parse_workflow(data)


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
        raise DefinitionError(_faults(err)) from None
