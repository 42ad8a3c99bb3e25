"""The served OpenAPI document, corrected where FastAPI's generation says other than the
server does. `install` wraps `app.openapi` (FastAPI's documented way to change the document).

- Errors: every error response is `application/problem+json` with the `Problem` schema.
  FastAPI documents its own 422 as `application/json` `HTTPValidationError` — a shape the
  API never sends (problems.install maps it onto a problem) — and only where a route has
  inputs; routes declare their other statuses with `problems.responses(...)`.
- JSON values (params, payloads): any JSON whose strings and keys hold no NUL character, as
  the DTOs check (`JsonValue`, recursive); FastAPI would say "any".
- Integer bounds: FastAPI's OpenAPI model holds `minimum`/`maximum` as floats, so a long's
  bound 2**63 - 1 is served as 2**63, a value the server refuses. Integral bounds are written
  back as integers, and the long bounds exactly.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.api.body_rules import JSON_VALUE, NO_NUL_PATTERN
from services.api.problems import PROBLEM_SCHEMA, problem_response
from services.domain.params import LONG_MAX, LONG_MIN

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
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


def install(app: FastAPI) -> None:
    make = app.openapi

    def openapi() -> dict[str, Any]:
        return correct(make())

    app.openapi = openapi  # type: ignore[method-assign]


def correct(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (changed in place; idempotent) with its errors declared as problems, its
    free JSON values as `JsonValue` and its integer bounds exact."""
    _declare_problems(document)
    document["components"]["schemas"]["JsonValue"] = JSON_VALUE_SCHEMA
    _exact_integer_bounds(document)
    _json_values(document)
    return document


def _declare_problems(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    for item in document.get("paths", {}).values():
        for method in _HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
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
