"""The steps of a definition: one model per step type (the typed steps a worker runs, and
sleep, subworkflow, foreach and while, which the engine runs), with their retry policy and
successors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from services.domain.kernel.statuses import FailureMode
from services.domain.language.expressions import MAX_SOURCE_CHARS
from services.domain.language.fields import (
    ID_PATTERN,
    MAX_STEPS,
    QUEUE_PATTERN,
    Duration,
    Model,
    Params,
    upper,
)
from services.domain.language.signal_specs import (
    MAX_SIGNAL_DEPENDENCIES,
    MAX_SIGNAL_OUTPUTS,
    SignalDependency,
    SignalOutput,
)

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


class FixedBackoff(Model):
    type: Literal["fixed"]
    user_seconds: Duration = 60.0
    platform_seconds: Duration = 60.0
    timeout_seconds: Duration = 60.0


class ExponentialBackoff(Model):
    type: Literal["exponential"] = "exponential"
    base_seconds: Duration = 60.0
    exponent: float = Field(2.0, ge=1.0, le=10.0)
    user_max_seconds: Duration = 600.0
    platform_max_seconds: Duration = 3600.0
    timeout_max_seconds: Duration = 3600.0


class RetryPolicy(Model):
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


class Successor(Model):
    """An edge to a successor, taken when the step ends well and `if` (CEL) holds."""

    step: str
    if_: str | None = Field(None, alias="if", min_length=1, max_length=MAX_SOURCE_CHARS)

    @property
    def condition(self) -> str | None:
        """The condition, or None for an unconditional edge (`"true"` counts as none)."""
        return None if self.if_ is None or self.if_.strip() == "true" else self.if_


class _StepBase(Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=10_000)
    tags: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=32)
    next: list[Annotated[Successor, BeforeValidator(_successor_shorthand)]] = Field(
        default_factory=list, max_length=MAX_STEPS
    )
    timeout: Duration | None = None
    failure_mode: Annotated[FailureMode, BeforeValidator(upper)] = FailureMode.FAIL_AFTER_RUNNING
    retry_policy: RetryPolicy = RetryPolicy()
    params: Params = Field(default_factory=dict)
    queue: str = Field("default", pattern=QUEUE_PATTERN)
    # Pause the step before each run of it starts, until the step is resumed (a breakpoint).
    breakpoint: bool = False
    # Wait before starting for signals matching these; send these when the step succeeds.
    signal_dependencies: list[SignalDependency] = Field(
        default_factory=list, max_length=MAX_SIGNAL_DEPENDENCIES
    )
    signal_outputs: list[SignalOutput] = Field(default_factory=list, max_length=MAX_SIGNAL_OUTPUTS)


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
    workflow: str = Field(pattern=ID_PATTERN)
    version: Annotated[int, Field(ge=1)] | Literal["default", "active", "latest"] = "default"
    sync: bool = True


# A loop is retried as a whole (every iteration again), so by default it is not: its
# iterations' own steps carry the retries.
_NO_RETRIES = RetryPolicy(user_limit=0, platform_limit=0)


class Range(Model):
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
    method: Annotated[HttpMethod, BeforeValidator(upper)] = "GET"
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
