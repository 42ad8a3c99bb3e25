"""Rules of request bodies that pydantic's field constraints do not say by themselves, and
how the OpenAPI document declares them: integers as JSON Schema means them, the size of
params, and no NUL character anywhere (PostgreSQL's text and jsonb cannot hold one, and a
body's strings reach them through the log)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

# PostgreSQL's `integer` (int4): the version, seq and schema id columns a number is looked up in.
INT4_MAX = 2**31 - 1
# A start's or a restart's params as JSON: a start command carries them beside the definition
# (at most MAX_CANONICAL_BYTES), and the two must stay under Kafka's 1 MiB message size.
MAX_PARAMS_BYTES = 256 * 1024


def params_size(params: dict[str, Any]) -> dict[str, Any]:
    # Lengths in bytes of the JSON as the command will carry it (compact, UTF-8).
    size = len(json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PARAMS_BYTES:
        raise ValueError(f"at most {MAX_PARAMS_BYTES} bytes as JSON, not {size}")
    return params


def integral_float(value: Any) -> Any:
    """3.0 is the integer 3 (JSON Schema's `integer`: a number without a fraction)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A version number in a JSON body: a number without a fraction that fits the column; not
# `true`, not the string "3" (pydantic's lax int would take both).
VersionNumber = Annotated[
    int, Field(strict=True, ge=1, le=INT4_MAX), BeforeValidator(integral_float)
]


NUL_MESSAGE = "a string may not hold a NUL character"

# How the document declares the rule that bodies.JsonBodyGuard enforces: string fields carry
# NO_NUL, and JSON values are marked JSON_VALUE, which services/api/openapi.py turns into a
# reference to its recursive `JsonValue` schema (pydantic would resolve a `$ref` here itself,
# and fail).
NO_NUL_PATTERN = r"^[^\x00]*$"
NO_NUL: dict[str, Any] = {"pattern": NO_NUL_PATTERN}
JSON_VALUE = "x-baton-json-value"
JSON_VALUE_MARK: dict[str, Any] = {JSON_VALUE: True}
JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "propertyNames": NO_NUL,
    "additionalProperties": JSON_VALUE_MARK,
}


def may_hold_nul(json_text: bytes) -> bool:
    """False only if no string or key decoded from `json_text` (valid JSON, as `json.loads`
    reads it) can hold a NUL: in UTF-8 JSON a NUL is only ever written as the escape
    `\\u0000` (a raw NUL byte is no valid JSON), and UTF-16 or UTF-32 text holds NUL bytes.
    A scan of the bytes, so the walk of `nul_paths` runs only for bodies that may need it."""
    return b"\x00" in json_text or b"\\u0000" in json_text


def nul_paths(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The location of each string (or key) below `value` that holds a NUL character."""
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                yield (*loc, key)
            else:
                yield from nul_paths(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from nul_paths(item, (*loc, index))
