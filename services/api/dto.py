"""Request and response bodies of the API (`…Create` in, `…Public` out).

Timestamps are RFC 3339 UTC; JSON-valued columns (definitions, params, outputs, payloads)
are returned as JSON, not as strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from services.api.body_rules import (
    INT4_MAX,
    JSON_OBJECT,
    JSON_VALUE_MARK,
    NO_NUL,
    VersionNumber,
    integral_float,
    params_size,
)
from services.domain.kernel.statuses import (
    AttemptStatus,
    FailureKind,
    InstanceStatus,
    RestartMode,
    StepStatus,
)
from services.domain.language.fields import ID_PATTERN
from services.domain.language.params import LONG_MAX, LONG_MIN
from services.domain.language.signal_specs import (
    MAX_SIGNAL_PARAMS,
    MAX_SIGNAL_STRING_CHARS,
    SIGNAL_PARAM_PATTERN,
)

T = TypeVar("T")

MAX_PAGE = 1000
DEFAULT_PAGE = 100


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A NUL character anywhere in a body is refused before any model sees it
    # (bodies.JsonBodyGuard); the string fields declare it (NO_NUL).


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(_Out, Generic[T]):
    """A slice of a list; `next_offset` is null on the last page."""

    items: list[T]
    limit: int
    offset: int
    next_offset: int | None


# -- workflows ---------------------------------------------------------------------------


class WorkflowAccepted(_Out):
    """A push was accepted: the version appears once the engine has recorded it."""

    workflow_id: str
    command_id: str


class ActivateBody(_In):
    version: VersionNumber | None = Field(None, description="default: the latest")


class ActivationAccepted(_Out):
    workflow_id: str
    action: Literal["activate", "deactivate"]
    command_id: str


class BreakpointAccepted(_Out):
    workflow_id: str
    step_id: str
    enabled: bool  # true: set; false: cleared
    command_id: str


class ValidationResult(_Out):
    valid: Literal[True] = True


class WorkflowPublic(_Out):
    workflow_id: str
    latest_version: int
    # The version `active` names; null when none is (then `default` is the latest).
    active_version: int | None = None
    name: str | None
    description: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    # The active version's time triggers: when each fires next, how often it has fired.
    time_triggers: list[TimeTriggerPublic] = Field(default_factory=list)
    # Step ids every instance pauses at (set by `PUT …/breakpoints/{step_id}`), sorted.
    breakpoints: list[str] = Field(default_factory=list)


class TimeTriggerPublic(_Out):
    index: int  # its position in the definition's time_triggers
    scheduled_for: datetime  # its next cron time
    fire_at: datetime  # … plus its jitter
    fired: int  # firings since the version became active
    last_instance_id: str | None = None


class WorkflowVersionSummary(_Out):
    workflow_id: str
    version: int
    created_at: datetime


class WorkflowVersionPublic(WorkflowVersionSummary):
    definition: dict[str, Any]


# -- instances ---------------------------------------------------------------------------


class InstanceCreate(_In):
    """Start an instance of a workflow version. The same `idempotency_key` twice starts one."""

    version: VersionNumber | Literal["default", "active", "latest"] = Field(
        "default", examples=["default", "active", "latest", 3]
    )
    params: Annotated[dict[str, Any], AfterValidator(params_size)] = Field(
        default_factory=dict, examples=[{"rows": 10}], json_schema_extra=JSON_OBJECT
    )
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=256, json_schema_extra=NO_NUL
    )
    initiator: str = Field("api", min_length=1, max_length=256, json_schema_extra=NO_NUL)

    @field_validator("version", mode="wrap")
    @classmethod
    def _one_version_fault(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # One fault at `version`, not one per member of the union.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                f"expected a version number (1 to {INT4_MAX}), 'default', 'active' or 'latest'"
            ) from None


class InstanceAccepted(_Out):
    instance_id: str
    workflow_id: str
    version: int
    command_id: str


class InstanceSummary(_Out):
    instance_id: str
    workflow_id: str
    version: int
    run: int
    status: InstanceStatus
    initiator: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    # A child instance (a subworkflow's, or a loop's iteration): the step it runs for.
    parent_instance_id: str | None = None
    parent_step_id: str | None = None


class InstancePublic(InstanceSummary):
    idempotency_key: str | None
    params: dict[str, Any]
    failure_reason: str | None
    failed_steps: list[Any]
    last_seq: int
    # Number of steps in each status (only statuses with at least one step).
    step_counts: dict[StepStatus, int]


class StepPublic(_Out):
    step_id: str
    position: int
    step_type: str
    status: StepStatus
    attempt: int
    run: int
    updated_at: datetime
    # Why it ended without an attempt's result: UNSATISFIED, INTERNALLY_FAILED, STOPPED.
    reason: str | None = None
    # A foreach or while step: its current attempt's iterations.
    iterations: IterationProgress | None = None
    # A step with signal dependencies: what it waits for, and what met each dependency.
    signals: StepSignals | None = None


class StepSignals(_Out):
    dependencies: list[dict[str, Any]]  # [{name, match: [[param, operator, value]]}]
    matched: dict[str, dict[str, Any]]  # dependency index -> {name, signal_seq}


class IterationProgress(_Out):
    total: int | None  # foreach: how many items; while: None (until the condition is false)
    started: int
    statuses: dict[InstanceStatus, int]  # ended iterations, by how they ended


class AttemptPublic(_Out):
    step_id: str
    attempt: int
    run: int
    status: AttemptStatus
    queue: str | None
    worker_id: str | None
    params: dict[str, Any]
    outputs: dict[str, Any] | None
    failure_kind: FailureKind | None
    message: str | None
    output_tail: str | None
    retry_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class EventPublic(_Out):
    seq: int
    event_id: str
    type: str
    workflow_id: str
    instance_id: str | None
    occurred_at: datetime
    # When the command behind it was issued, on its sender's clock (worker, API); null for timers.
    caused_at: datetime | None = None
    payload: dict[str, Any]


class EventPage(_Out):
    """Events after `after_seq`; pass `next_after_seq` back to read on."""

    items: list[EventPublic]
    next_after_seq: int


class ActionReason(_In):
    reason: str = Field("", max_length=4096, json_schema_extra=NO_NUL)


class RestartBody(_In):
    # `step` exactly when the mode is FROM_STEP (the route checks it, this declares it).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"mode": {"const": "FROM_STEP"}}, "required": ["mode"]},
            "then": {"properties": {"step": {"type": "string"}}, "required": ["step"]},
            "else": {"properties": {"step": {"type": "null"}}},
        },
    )

    mode: RestartMode = RestartMode.FROM_INCOMPLETE
    # FROM_STEP: the step to run again, with everything downstream of it.
    step: str | None = Field(None, min_length=1, max_length=128, pattern=ID_PATTERN)
    # Overrides for the new run; only MUTABLE and MUTABLE_ON_START_RESTART params may change.
    params: Annotated[dict[str, Any], AfterValidator(params_size)] = Field(
        default_factory=dict, examples=[{"rows": 10}], json_schema_extra=JSON_OBJECT
    )


class ActionAccepted(_Out):
    instance_id: str
    action: Literal["stop", "kill", "restart", "pause", "resume", "unblock"]
    command_id: str


class StepActionAccepted(_Out):
    instance_id: str
    step_id: str
    action: Literal["skip", "stop", "restart", "pause", "resume", "bypass-signals"]
    command_id: str


# -- signals ---------------------------------------------------------------------------


class SignalCreate(_In):
    """A signal: its `params` (strings and longs) are what dependencies and triggers match
    on; `payload` is carried along. The same `request_id` twice is one signal."""

    name: str = Field(pattern=ID_PATTERN, examples=["table_ready"])
    params: dict[
        Annotated[str, Field(pattern=SIGNAL_PARAM_PATTERN)],
        Annotated[
            Annotated[int, Field(strict=True, ge=LONG_MIN, le=LONG_MAX)]
            | Annotated[str, Field(max_length=MAX_SIGNAL_STRING_CHARS, json_schema_extra=NO_NUL)],
            BeforeValidator(integral_float),
        ],
    ] = Field(
        default_factory=dict,
        max_length=MAX_SIGNAL_PARAMS,
        examples=[{"table": "sales", "day": 20251121}],
        # A name outside the pattern is refused: say so, not only what matching names hold.
        json_schema_extra={"additionalProperties": False},
    )
    payload: Any = Field(None, json_schema_extra=JSON_VALUE_MARK)
    request_id: str | None = Field(None, min_length=1, max_length=256, json_schema_extra=NO_NUL)
    sender: str = Field("api", min_length=1, max_length=256, json_schema_extra=NO_NUL)


class SignalAccepted(_Out):
    name: str
    request_id: str
    command_id: str


class SignalPublic(_Out):
    name: str
    signal_seq: int
    request_id: str
    params: dict[str, Any]
    payload: Any
    sender: str
    woken: int  # the waiting steps it met at once
    received_at: datetime


# -- schema registry ---------------------------------------------------------------------


class SubjectVersionPublic(_Out):
    """One version of a registry subject, in the Confluent Schema Registry's shape."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    subject: str
    version: int
    id: int
    # `schema` itself would shadow pydantic's deprecated BaseModel.schema.
    schema_: str = Field(alias="schema", description="the Avro schema, as JSON text")


# -- health ------------------------------------------------------------------------------


class ProcessHealth(_Out):
    live: bool  # at least one member of the kind's consumer group(s) is heartbeating
    members: int


class ProjectionHealth(_Out):
    lag: int | None  # events on the events topic not yet projected; null when not known
    partitions: dict[str, int]  # the lag per events partition
    max_lag: int  # the lag above which the health is degraded


class Health(_Out):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    kafka: Literal["ok", "unavailable"]
    producer: Literal["ok", "unavailable", "stopped"]
    processes: dict[str, ProcessHealth]  # engine, worker, projector
    queues: dict[str, int]  # live workers per queue (its group's members)
    projection: ProjectionHealth
