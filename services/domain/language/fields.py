"""What every part of a definition is built from: the limits, durations, the strict frozen
model base, and params (a literal, a template or a CEL expression, typed)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from services.domain.language.expressions import MAX_SOURCE_CHARS, is_template, strings_in
from services.domain.language.params import ParamMode, ParamType, check_value, infer_type, normalise

MAX_STEPS = 300


MAX_DEFINITION_BYTES = 1_000_000


# The stored (canonical) form travels in commands and events: bounded well under the broker's
# message size, so no definition can make a record Kafka refuses.
MAX_CANONICAL_BYTES = 512_000


DEFAULT_WORKFLOW_TIMEOUT_S = 10 * 86_400


MAX_WORKFLOW_TIMEOUT_S = 120 * 86_400


# Every duration (timeouts, sleeps, back-off) is finite and at most this.
MAX_DURATION_S = MAX_WORKFLOW_TIMEOUT_S


ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"


QUEUE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


# A param's name: an environment variable's name too, since shell steps get params so.
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


PARAM_NAME_FAULT = "a param name is letters, digits and _, not starting with a digit"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


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


def check_zone(value: str) -> str:
    """An IANA time zone name, or ValueError saying it is none."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as 'Europe/Amsterdam'"
        ) from None
    return value


def upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Param(Model):
    """A literal `value` (whose strings may interpolate `${...}`) or a CEL `expression`."""

    type: ParamType
    value: Any = None
    expression: str | None = Field(None, min_length=1, max_length=MAX_SOURCE_CHARS)
    mode: Annotated[ParamMode, BeforeValidator(upper)] = ParamMode.MUTABLE
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
