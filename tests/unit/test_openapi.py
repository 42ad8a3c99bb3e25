"""The OpenAPI document says what the server does: errors are problem+json, and the
constraints the server enforces on paths, queries and bodies are declared."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from services.api.problems import MEDIA_TYPE
from tests.unit.api_app import DOCUMENT, IDS, OPERATIONS
from tests.unit.api_app import member_schemas as _schemas

INT32_MAX = 2**31 - 1


# -- error responses -----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=IDS)
def test_every_error_response_is_declared_as_problem_json(
    path: str, method: str, op: dict[str, Any]
) -> None:
    errors = {s: r for s, r in op["responses"].items() if s == "default" or int(s) >= 400}
    for status, response in errors.items():
        assert set(response.get("content", {})) == {MEDIA_TYPE}, (method, path, status)
        schema = response["content"][MEDIA_TYPE]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=IDS)
def test_every_operation_with_input_declares_its_422(
    path: str, method: str, op: dict[str, Any]
) -> None:
    if op.get("parameters") or op.get("requestBody"):
        assert "422" in op["responses"], (method, path)


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=IDS)
def test_every_success_response_declares_its_body(
    path: str, method: str, op: dict[str, Any]
) -> None:
    for status, response in op["responses"].items():
        if status.startswith("2"):
            schema = response["content"]["application/json"]["schema"]
            # A schema of nothing but a title (FastAPI's for `-> Any`) says nothing.
            assert set(schema) - {"title", "description"}, (method, path, status)


def test_fastapis_own_validation_error_shape_is_not_documented() -> None:
    schemas = DOCUMENT["components"]["schemas"]

    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail"]


# -- declared constraints ------------------------------------------------------------------


def _string_and_integer_params() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, method, op in OPERATIONS:
        for param in op.get("parameters", []):
            if param["in"] in ("path", "query"):
                yield f"{method.upper()} {path}", param["name"], param


PARAMS = list(_string_and_integer_params())


@pytest.mark.parametrize(("op", "name", "param"), PARAMS, ids=[f"{o} {n}" for o, n, _ in PARAMS])
def test_every_parameter_is_bounded_and_excludes_control_characters(
    op: str, name: str, param: dict[str, Any]
) -> None:
    for schema in _schemas(param["schema"]):
        if schema.get("type") == "string" and "enum" not in schema:
            assert "pattern" in schema, (op, name)
            pattern = re.compile(schema["pattern"])
            assert not pattern.search("a\x00b"), (op, name)
            assert not pattern.search("a\nb"), (op, name)
            assert "maxLength" in schema, (op, name)
        elif schema.get("type") == "integer":
            assert "maximum" in schema, (op, name)
            assert schema["maximum"] <= INT32_MAX, (op, name)


def test_body_versions_fit_the_version_column() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    start = [s for s in schemas["InstanceCreate"]["properties"]["version"]["anyOf"]]
    activate = [s for s in schemas["ActivateBody"]["properties"]["version"]["anyOf"]]

    for schema in start + activate:
        if schema.get("type") == "integer":
            assert schema["maximum"] == INT32_MAX


def test_a_restart_step_is_declared_as_a_step_id() -> None:
    step = DOCUMENT["components"]["schemas"]["RestartBody"]["properties"]["step"]["anyOf"]

    assert any("pattern" in s for s in step)


def test_signal_params_are_declared_with_exact_long_bounds() -> None:
    params = DOCUMENT["components"]["schemas"]["SignalCreate"]["properties"]["params"]
    (value,) = params["patternProperties"].values()
    integer = next(s for s in value["anyOf"] if s.get("type") == "integer")

    # Exact integers, not floats: 2**63 as a float would declare 2**63 itself valid.
    assert integer["maximum"] == 2**63 - 1
    assert isinstance(integer["maximum"], int)
    assert integer["minimum"] == -(2**63)
    assert isinstance(integer["minimum"], int)
    assert params.get("additionalProperties") is False


REQUEST_BODIES = ["InstanceCreate", "RestartBody", "ActionReason", "SignalCreate", "ActivateBody"]


@pytest.mark.parametrize("name", REQUEST_BODIES)
def test_every_body_string_is_declared_without_nul(name: str) -> None:
    """What `_In._no_nul` refuses, the document says: each string field has a pattern that
    refuses NUL, and each free JSON value is a `JsonValue`."""
    schemas = DOCUMENT["components"]["schemas"]
    for field, schema in schemas[name]["properties"].items():
        for member in _schemas(schema):
            if "$ref" in member:
                assert member["$ref"].rsplit("/", 1)[1] in {"JsonValue", "RestartMode"}
            elif member.get("type") == "string" and "enum" not in member:
                # On the member, or beside its anyOf (`pattern` applies to strings only).
                pattern = member.get("pattern", schema.get("pattern"))
                assert not re.search(pattern, "a\x00b"), (name, field)
            elif member.get("type") == "object":
                assert member.get("additionalProperties") in (
                    False,
                    {"$ref": "#/components/schemas/JsonValue"},
                ), (name, field)


def test_a_json_value_is_declared_recursively_without_nul() -> None:
    value = DOCUMENT["components"]["schemas"]["JsonValue"]
    string, _, array, obj = value["anyOf"]

    assert not re.search(string["pattern"], "a\x00b")
    assert re.search(string["pattern"], "ab")
    assert array["items"] == {"$ref": "#/components/schemas/JsonValue"}
    assert not re.search(obj["propertyNames"]["pattern"], "a\x00b")
    assert obj["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue"}


@pytest.mark.parametrize("path", ["/api/v1/workflows", "/api/v1/workflows/validate"])
def test_a_definition_body_is_declared_non_empty(path: str) -> None:
    content = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]

    definition = content["application/json"]["schema"]
    assert definition["required"] == ["id", "steps"]
    assert definition["properties"]["steps"]["minItems"] == 1
    for media_type, body in content.items():
        if media_type != "application/json":
            assert body["schema"]["minLength"] == 1, media_type
