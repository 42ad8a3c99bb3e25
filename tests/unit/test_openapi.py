"""The OpenAPI document says what the server does: errors are problem+json, the constraints
the server enforces on paths, queries and bodies are declared, and OPTIONS and 405 name every
method of a path.

The app is built over stand-ins for the pool and the producer that fail on any use: a request
that got past validation to a query would be a 500, so a 422 here also proves that the fault
is caught before any query.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from services.api.app import create_app
from services.api.common import OrjsonResponse
from services.api.deps import ApiDeps
from services.api.dto import ActivateBody, InstanceCreate, SignalCreate
from services.api.problems import MEDIA_TYPE

INT32_MAX = 2**31 - 1
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

# A value each path parameter accepts, to reach the one under test.
_PATH_SAMPLES = {
    "workflow_id": "wf",
    "instance_id": "wf~0123abcd",
    "step_id": "a",
    "version": "1",
    "subject": "baton.events-value",
    "schema_id": "1",
    "action": "skip",
}


class _NoIO:
    """A pool or producer that must not be used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no I/O expected, but {name} was used")


def _app() -> FastAPI:
    deps = ApiDeps(pool=cast(Any, _NoIO()), producer=cast(Any, _NoIO()), codec=cast(Any, None))
    return create_app(deps)


def _document() -> dict[str, Any]:
    return _app().openapi()


DOCUMENT = _document()


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


OPERATIONS = list(_operations())
IDS = [f"{m.upper()} {p}" for p, m, _ in OPERATIONS]


def _params(op: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [p for p in op.get("parameters", []) if p["in"] == where]


def _schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema itself, or the members of its anyOf (an optional parameter)."""
    return [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        yield http


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


# -- what the server answers ---------------------------------------------------------------


def _url(path: str, hostile: str | None = None, value: str = "") -> str:
    out = path
    for name in re.findall(r"{(\w+)}", path):
        sample = value if name == hostile else _PATH_SAMPLES[name]
        out = out.replace(f"{{{name}}}", quote(sample, safe=""))
    return out


def _hostile_cases() -> Iterator[tuple[str, str, str, str, str]]:
    """(method, path, where, name, value) for each path and query parameter: a NUL byte in a
    string, a number past int32 in an integer."""
    for path, method, op in OPERATIONS:
        for param in op.get("parameters", []):
            if param["in"] not in ("path", "query"):
                continue
            kinds = {s.get("type") for s in _schemas(param["schema"])}
            if "string" in kinds and not any("enum" in s for s in _schemas(param["schema"])):
                yield method, path, param["in"], param["name"], "a\x00b"
            if "integer" in kinds:
                yield method, path, param["in"], param["name"], str(2**31)


HOSTILE = list(_hostile_cases())


@pytest.mark.parametrize(
    ("method", "path", "where", "name", "value"),
    HOSTILE,
    ids=[f"{m.upper()} {p} {n}={v!r}" for m, p, _, n, v in HOSTILE],
)
async def test_a_hostile_parameter_is_a_422_before_any_query(
    client: httpx.AsyncClient, method: str, path: str, where: str, name: str, value: str
) -> None:
    if where == "path":
        response = await client.request(method, _url(path, name, value))
    else:
        response = await client.request(method, _url(path), params={name: value})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    assert [e["path"] for e in response.json()["errors"]] == [f"{where}.{name}"]


def _methods_at(url: str) -> set[str]:
    """The methods of every documented path that `url` matches (`/workflows/validate` is
    also `/workflows/{workflow_id}`)."""
    methods: set[str] = set()
    for path, item in DOCUMENT["paths"].items():
        if re.fullmatch(re.sub(r"{\w+}", "[^/]+", path), url):
            methods |= {m.upper() for m in HTTP_METHODS if m in item}
    return methods


@pytest.mark.parametrize("path", list(DOCUMENT["paths"]))
async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient, path: str) -> None:
    declared = _methods_at(_url(path))

    response = await client.options(_url(path))

    assert response.status_code == 204, response.text
    assert set(response.headers["allow"].split(", ")) == declared | {"OPTIONS"}
    assert response.content == b""


async def test_a_wrong_method_is_405_naming_every_method_of_the_path(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/api/v1/workflows")

    assert response.status_code == 405
    assert response.headers["content-type"] == MEDIA_TYPE
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}


async def test_options_on_an_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.headers["content-type"] == MEDIA_TYPE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'"\xff"', "the body is not valid JSON: it is not UTF-8 text"),
        (
            b"[" * 100_000 + b"]" * 100_000,
            "the body is not valid JSON: it is nested too deeply",
        ),
    ],
)
async def test_a_body_json_cannot_decode_is_a_422_like_any_malformed_json(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await client.post(
        "/api/v1/signals", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    assert response.json()["errors"] == [{"path": "", "message": message}]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "s", "sender": "a\x00b"}, "sender"),
        ({"name": "s", "payload": {"rows": [1, {"note": "a\x00b"}]}}, "payload.rows[1].note"),
        ({"name": "s", "params": {"table": "a\x00b"}}, "params.table"),
    ],
)
async def test_a_nul_character_in_a_body_is_a_422_before_anything_is_published(
    client: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    response = await client.post("/api/v1/signals", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"path": path, "message": "a string may not hold a NUL character"}
    ]


@pytest.mark.parametrize(("value", "version"), [(3, 3), (3.0, 3), (2**31 - 1, 2**31 - 1)])
def test_a_body_version_is_a_json_integer(value: object, version: int) -> None:
    # JSON Schema's `integer` is a number without a fraction: 3.0 is one.
    assert InstanceCreate.model_validate({"version": value}).version == version
    assert ActivateBody.model_validate({"version": value}).version == version


@pytest.mark.parametrize("value", [True, "3", 3.5, 0, 2**31])
def test_a_body_version_is_not_a_boolean_a_numeric_string_or_past_int4(value: object) -> None:
    with pytest.raises(ValidationError):
        InstanceCreate.model_validate({"version": value})
    with pytest.raises(ValidationError):
        ActivateBody.model_validate({"version": value})


def test_a_signal_long_may_be_written_as_an_integral_number_but_not_a_boolean() -> None:
    assert SignalCreate.model_validate({"name": "s", "params": {"d": 20.0}}).params == {"d": 20}
    with pytest.raises(ValidationError):
        SignalCreate.model_validate({"name": "s", "params": {"d": True}})
    with pytest.raises(ValidationError):
        SignalCreate.model_validate({"name": "s", "params": {"d": 2**63}})


def test_a_response_renders_integers_past_64_bits() -> None:
    # orjson refuses them ("Integer exceeds 64-bit range"); a stored JSON value may hold one.
    body = OrjsonResponse({"n": 10**30, "at": "x"}).body

    assert bytes(body) == b'{"n":1000000000000000000000000000000,"at":"x"}'
