"""The served OpenAPI document, corrected where FastAPI's generation says other than the
server does. `install` wraps `app.openapi` (FastAPI's documented way to change the document).

- Errors: every error response is `application/problem+json` with the `Problem` schema.
  FastAPI documents its own 422 as `application/json` `HTTPValidationError` — a shape the
  API never sends (problems.install maps it onto a problem) — and only where a route has
  inputs. What every operation or every write can answer is declared here, in one place
  (`_declare_refusals`): the middleware's refusals (HostGuard's 400, OriginGuard's 403,
  JsonBodyGuard's 413 and 422) and 503, which every route can answer (each reads
  PostgreSQL, publishes to Kafka or validates in the bounded pool); routes declare what is
  theirs alone with `problems.responses(...)` (404, 409, 415, a publish's 413 past the
  body guard). tests/unit/test_openapi.py provokes each status on every operation.
- JSON values (params, payloads): any JSON whose strings and keys hold no NUL character, as
  the DTOs check (`JsonValue`, recursive); FastAPI would say "any".
- Integer bounds: FastAPI's OpenAPI model holds `minimum`/`maximum` as floats, so a long's
  bound 2**63 - 1 is served as 2**63, a value the server refuses. Integral bounds are written
  back as integers, and the long bounds exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from fastapi import FastAPI

from services.api.body_rules import JSON_VALUE, NO_NUL_PATTERN
from services.api.origins import WRITE_METHODS
from services.api.problems import PROBLEM_SCHEMA, problem_response
from services.domain.language.params import LONG_MAX, LONG_MIN

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_WRITE_METHODS = frozenset(m.lower() for m in WRITE_METHODS)
# What each refusal declared in `_declare_refusals` means: the problem types it stands for.
_ANY_OPERATION = {
    400: "Bad Request: the Host header names no address of this API (host-not-allowed)",
    503: "Service Unavailable, with Retry-After: the database is away (database-unavailable),"
    " Kafka did not take the command (publish-failed), did not acknowledge it within 5 s"
    " (publish-timeout: it may still be applied), failed to take the previous one so nothing"
    " was sent (kafka-unavailable), or too many commands wait for it (overloaded); or the"
    " definition was not validated in time (validation-busy), or, on /health, the stack is"
    " not healthy (unhealthy)",
}
_ANY_WRITE = {
    403: "Forbidden: a write from a web origin that is not allowed (origin-not-allowed)",
}
_BOUNDED_BODY = {
    413: "Content Too Large: a JSON body over the API's bound (content-too-large), or a"
    " command larger than Kafka takes (too-large)",
    422: "Unprocessable Content: the request is invalid; see errors",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds after which a retry has a fair chance (database-unavailable,"
        " publish-failed, publish-timeout, kafka-unavailable, overloaded)",
        "schema": {"type": "integer", "minimum": 0},
    }
}
# What a float bound of FastAPI's stands for: the long bounds, which a double cannot hold.
_EXACT_BOUNDS = {float(LONG_MAX): LONG_MAX, float(LONG_MIN): LONG_MIN}
JSON_VALUE_REF = "#/components/schemas/JsonValue"
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "any JSON value whose strings and keys hold no NUL character",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "additionalProperties": {"$ref": JSON_VALUE_REF},
        },
    ],
}


def install(app: FastAPI, own_body_paths: Collection[str] = ()) -> None:
    """`own_body_paths`: the paths whose writes read their body themselves, past
    JsonBodyGuard (which then answers neither their 413 nor a 422 of its own)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        return correct(make(), own_body_paths)

    app.openapi = openapi  # type: ignore[method-assign]


def correct(document: dict[str, Any], own_body_paths: Collection[str] = ()) -> dict[str, Any]:
    """`document` (changed in place; idempotent) with every refusal declared, its errors as
    problems, its free JSON values as `JsonValue` and its integer bounds exact."""
    _declare_problems(document)
    _declare_refusals(document, frozenset(own_body_paths))
    document["components"]["schemas"]["JsonValue"] = JSON_VALUE_SCHEMA
    _exact_integer_bounds(document)
    _json_values(document)
    return document


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in _HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def _declare_refusals(document: dict[str, Any], own_body_paths: frozenset[str]) -> None:
    for path, method, operation in _operations(document):
        refusals = dict(_ANY_OPERATION)
        if method in _WRITE_METHODS:
            refusals |= _ANY_WRITE
            if path not in own_body_paths:
                refusals |= _BOUNDED_BODY
        declared = operation.setdefault("responses", {})
        for status, description in refusals.items():
            declared[str(status)] = problem_response(status) | {"description": description}
        declared["503"]["headers"] = _RETRY_AFTER


def _declare_problems(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    for _, _, operation in _operations(document):
        declared = operation.setdefault("responses", {})
        for status in list(declared):
            if status == "default" or int(status) >= 400:
                number = 422 if status == "default" else int(status)
                declared[status] = problem_response(number)
        if operation.get("parameters") or operation.get("requestBody"):
            declared.setdefault("422", problem_response(422))


def _exact_integer_bounds(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                bound = node.get(key)
                if isinstance(bound, float) and bound.is_integer():
                    node[key] = _EXACT_BOUNDS.get(bound, int(bound))
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)


def _json_values(node: Any) -> None:
    """Each schema marked JSON_VALUE by the DTOs becomes a reference to `JsonValue`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and value.get(JSON_VALUE):
                node[key] = {"$ref": JSON_VALUE_REF}
            else:
                _json_values(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict) and value.get(JSON_VALUE):
                node[index] = {"$ref": JSON_VALUE_REF}
            else:
                _json_values(value)
