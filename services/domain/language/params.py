"""Typed parameter values: the literal types a workflow, a step or a start request may carry."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ParamType(StrEnum):
    STRING = "string"
    LONG = "long"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    STRING_MAP = "string_map"
    MAP = "map"
    STRING_ARRAY = "string_array"
    LONG_ARRAY = "long_array"
    DOUBLE_ARRAY = "double_array"
    BOOLEAN_ARRAY = "boolean_array"


class ParamMode(StrEnum):
    """Who may change a param's value, and when (Maestro's modes).

    Baton's steps never write params (their results are `steps.<id>.outputs`), so MUTABLE and
    MUTABLE_ON_START_RESTART allow the same changes here: at start and at restart."""

    CONSTANT = "CONSTANT"  # a literal, never overridden; a restart keeps it
    IMMUTABLE = "IMMUTABLE"  # never overridden; a restart evaluates it again
    MUTABLE = "MUTABLE"  # overridable at start and restart (the default)
    MUTABLE_ON_START = "MUTABLE_ON_START"  # overridable at start; a restart keeps its value
    MUTABLE_ON_START_RESTART = "MUTABLE_ON_START_RESTART"

    @property
    def on_start(self) -> bool:
        return self not in (ParamMode.CONSTANT, ParamMode.IMMUTABLE)

    @property
    def on_restart(self) -> bool:
        return self in (ParamMode.MUTABLE, ParamMode.MUTABLE_ON_START_RESTART)


LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


MAX_STRING_CHARS = 65_536


MAX_ARRAY_ITEMS = 10_000


def _is_long(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and LONG_MIN <= v <= LONG_MAX


def _is_double(v: object) -> bool:
    if isinstance(v, bool):
        return False
    return (isinstance(v, float) and math.isfinite(v)) or _is_long(v)


def _is_string(v: object) -> bool:
    return isinstance(v, str) and len(v) <= MAX_STRING_CHARS


def _is_json(v: object, depth: int = 0) -> bool:
    if depth > 16:
        return False
    if v is None or isinstance(v, bool | str) or _is_long(v) or _is_double(v):
        return True
    if isinstance(v, list):
        return len(v) <= MAX_ARRAY_ITEMS and all(_is_json(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_json(x, depth + 1) for k, x in v.items())
    return False


_SCALAR_CHECKS: dict[ParamType, Callable[[object], bool]] = {
    ParamType.STRING: _is_string,
    ParamType.LONG: _is_long,
    ParamType.DOUBLE: _is_double,
    ParamType.BOOLEAN: lambda v: isinstance(v, bool),
}


_ARRAY_ITEM = {
    ParamType.STRING_ARRAY: ParamType.STRING,
    ParamType.LONG_ARRAY: ParamType.LONG,
    ParamType.DOUBLE_ARRAY: ParamType.DOUBLE,
    ParamType.BOOLEAN_ARRAY: ParamType.BOOLEAN,
}


def check_value(ptype: ParamType, value: Any) -> str | None:
    """Return why `value` is not a valid `ptype`, or None when it is."""
    if ptype in _SCALAR_CHECKS:
        return None if _SCALAR_CHECKS[ptype](value) else f"expected a {ptype.value}"
    if ptype in _ARRAY_ITEM:
        item = _ARRAY_ITEM[ptype]
        if not isinstance(value, list) or len(value) > MAX_ARRAY_ITEMS:
            return f"expected a {ptype.value} (a list of at most {MAX_ARRAY_ITEMS} items)"
        for i, x in enumerate(value):
            if not _SCALAR_CHECKS[item](x):
                return f"item {i}: expected a {item.value}"
        return None
    if ptype is ParamType.STRING_MAP:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and _is_string(x) for k, x in value.items()
        ):
            return "expected a string_map (an object of string values)"
        return None
    # ParamType.MAP: any JSON object, bounded in depth
    if not isinstance(value, dict) or not _is_json(value):
        return "expected a map (a JSON object nested at most 16 levels)"
    return None


def normalise(ptype: ParamType, value: Any) -> Any:
    """Canonical form of a valid value (doubles are floats) so equal params encode equally."""
    if ptype is ParamType.DOUBLE:
        return float(value)
    if ptype is ParamType.DOUBLE_ARRAY:
        return [float(x) for x in value]
    return value


def infer_type(value: Any) -> ParamType | None:
    """The type of a shorthand literal (`rows: 3`); maps must be declared explicitly."""
    if isinstance(value, bool):
        return ParamType.BOOLEAN
    if isinstance(value, int):
        return ParamType.LONG
    if isinstance(value, float):
        return ParamType.DOUBLE
    if isinstance(value, str):
        return ParamType.STRING
    if isinstance(value, list) and value:
        kinds = {infer_type(x) for x in value}
        if len(kinds) == 1:
            only = kinds.pop()
            for array, item in _ARRAY_ITEM.items():
                if item is only:
                    return array
        if kinds <= {ParamType.LONG, ParamType.DOUBLE}:
            return ParamType.DOUBLE_ARRAY
    return None


def iso_timestamp(value: datetime) -> str:
    """A timestamp as params carry it: ISO 8601 in UTC, `2024-01-01T00:00:00Z`."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def coerce(ptype: ParamType, value: Any) -> Any:
    """An evaluated value as a `ptype` param, or ValueError saying why it is not one.

    What CEL hands back is converted where the meaning is unambiguous: a timestamp becomes
    an ISO 8601 string for a string param, and a long becomes a double for a double param."""
    if isinstance(value, datetime) and ptype is ParamType.STRING:
        value = iso_timestamp(value)
    fault = check_value(ptype, value)
    if fault:
        raise ValueError(f"{fault}, got {describe(value)}")
    return normalise(ptype, value)


def describe(value: Any) -> str:
    """A value's kind in the params' vocabulary, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a long"
    if isinstance(value, float):
        return "a double"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime):
        return "a timestamp"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if value is None:
        return "null"
    return type(value).__name__
