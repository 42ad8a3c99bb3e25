"""Signals in a definition, and what a signal is: a name with indexed params (strings and
longs, which dependencies and triggers match on) and a free JSON payload.

- A step's `signal_dependencies`: the step waits before it starts until, for each one, a
  signal of that name arrives (or has arrived) whose params meet every condition of `match`.
- A step's `signal_outputs`: signals the step sends when it succeeds.

Match values and output params are params (a literal, a `${...}` template or a CEL
expression) typed string or long. They see the run's params, the built-ins, the outputs of
the steps upstream (and, for outputs, of the step itself) and, in a loop, `iteration`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from services.domain.language.fields import ID_PATTERN, Model, Param, ParamSpec
from services.domain.language.params import LONG_MAX, LONG_MIN, ParamType

# A signal's params: how many, and how long a string value may be. A payload's size.
MAX_SIGNAL_PARAMS = 64


MAX_SIGNAL_STRING_CHARS = 1024


MAX_SIGNAL_PAYLOAD_BYTES = 64 * 1024


# Per step: dependencies and outputs; per dependency: conditions.
MAX_SIGNAL_DEPENDENCIES = 16


MAX_SIGNAL_OUTPUTS = 16


MAX_MATCH_CONDITIONS = 16


SIGNAL_PARAM_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


_INDEXED_TYPES = (ParamType.STRING, ParamType.LONG)


SignalValue = str | int


class SignalOperator(StrEnum):
    EQ = "="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="


def signal_value_fault(value: Any) -> str | None:
    """Why `value` cannot be a signal param (None when it can)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return "a signal param is a string or a long"
    if isinstance(value, int) and not LONG_MIN <= value <= LONG_MAX:
        return "a long is 64 bits"
    if isinstance(value, str) and len(value) > MAX_SIGNAL_STRING_CHARS:
        return f"a signal param string is at most {MAX_SIGNAL_STRING_CHARS} characters"
    return None


def _indexed(param: Param) -> Param:
    if param.type not in _INDEXED_TYPES:
        raise ValueError(f"a signal param is a string or a long, not a {param.type.value}")
    return param


def _condition_shorthand(value: Any) -> Any:
    """`table: sales` means `table: {op: "=", value: sales}`."""
    if isinstance(value, dict) and "op" in value:
        return value
    return {"value": value}


class SignalCondition(Model):
    op: SignalOperator = SignalOperator.EQ
    value: ParamSpec

    @field_validator("value")
    @classmethod
    def _typed(cls, value: Param) -> Param:
        return _indexed(value)


Condition = Annotated[SignalCondition, BeforeValidator(_condition_shorthand)]


ParamName = Annotated[str, Field(pattern=SIGNAL_PARAM_PATTERN)]


class SignalDependency(Model):
    """Wait for a signal `name` whose params meet every condition of `match`."""

    name: str = Field(pattern=ID_PATTERN)
    match: dict[ParamName, Condition] = Field(default_factory=dict, max_length=MAX_MATCH_CONDITIONS)


class SignalOutput(Model):
    """Send signal `name` with `params` (evaluated) and `payload` (literal JSON) on success."""

    name: str = Field(pattern=ID_PATTERN)
    params: dict[ParamName, ParamSpec] = Field(default_factory=dict, max_length=MAX_SIGNAL_PARAMS)
    payload: Any = None

    @field_validator("params")
    @classmethod
    def _typed(cls, params: dict[str, Param]) -> dict[str, Param]:
        for p in params.values():
            _indexed(p)
        return params

    @field_validator("payload")
    @classmethod
    def _bounded(cls, payload: Any) -> Any:
        if len(json.dumps(payload)) > MAX_SIGNAL_PAYLOAD_BYTES:
            raise ValueError(f"a signal payload is at most {MAX_SIGNAL_PAYLOAD_BYTES} bytes")
        return payload


# An evaluated condition: (param, operator, value).
Match = tuple[tuple[str, SignalOperator, SignalValue], ...]


def satisfies(match: Match, params: Mapping[str, Any]) -> bool:
    """Whether a signal's params meet every condition. A param that is missing, or of the
    other type (a string against a long), meets none, except that a long meets a string
    equality as its digits: the CLI sends `-p day=20251121` as a long, and a signal trigger
    fills a string param with those digits (triggers.trigger_params)."""
    for name, op, value in match:
        want: Any = value  # the same type as `have`, checked below
        have = params.get(name)
        if op is SignalOperator.EQ and isinstance(want, str) and type(have) is int:
            have = str(have)
        if have is None or isinstance(have, bool) or type(have) is not type(want):
            return False
        if op is SignalOperator.EQ:
            ok = have == want
        elif op is SignalOperator.GT:
            ok = have > want
        elif op is SignalOperator.GE:
            ok = have >= want
        elif op is SignalOperator.LT:
            ok = have < want
        else:
            ok = have <= want
        if not ok:
            return False
    return True


def match_to_json(match: Match) -> str:
    return json.dumps([[n, op.value, v] for n, op, v in match], separators=(",", ":"))


def match_from_json(text: str) -> Match:
    return tuple((n, SignalOperator(op), v) for n, op, v in json.loads(text))
