"""The OpenAPI document says what the server does: errors are problem+json, every status an
operation can answer is declared, and the constraints the server enforces on paths, queries
and bodies are declared."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from fastapi import FastAPI

from services.api.app import ApiOptions
from services.api.bodies import MAX_JSON_BODY_BYTES
from services.api.problems import MEDIA_TYPE
from services.api.validation import DefinitionValidator
from tests.unit.api.api_app import DOCUMENT, IDS, OPERATIONS, PATH_SAMPLES, Failing, app_over
from tests.unit.api.api_app import member_schemas as _schemas

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


# -- every status the server answers is declared --------------------------------------------

_DEFINITION = b'{"id": "wf", "steps": [{"id": "a", "type": "shell", "command": "true"}]}'
# A body each operation accepts, to reach what is behind it; the others need none.
_BODIES = {
    ("post", "/api/v1/workflows"): _DEFINITION,
    ("post", "/api/v1/workflows/validate"): _DEFINITION,
    ("post", "/api/v1/signals"): b'{"name": "s"}',
}
_WRITES = ("post", "put", "patch", "delete")
_OWN_HOSTS = ("127.0.0.1", "localhost")
_OWN = ApiOptions(own_origins=("http://127.0.0.1:8080",), own_hosts=_OWN_HOSTS)


@dataclass(frozen=True)
class _Fault:
    """A way a request meets a refusal or an outage: the app it meets, what it adds to an
    ordinary request, and which methods it applies to."""

    name: str
    app: Callable[[DefinitionValidator], FastAPI]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes | None = None
    writes_only: bool = False


def _over(pool: object, producer: object) -> Callable[[DefinitionValidator], FastAPI]:
    def build(validator: DefinitionValidator) -> FastAPI:
        cluster = Failing(ConnectionRefusedError(111, "Connection refused"))
        return app_over(pool, producer, cluster=cluster, validator=validator, options=_OWN)

    return build


_DB_AWAY = Failing(ConnectionRefusedError(111, "Connection refused"))
_KAFKA_AWAY = Failing(KafkaConnectionError("broker away"))
_FAULTS = [
    _Fault("foreign Host", _over(_DB_AWAY, _KAFKA_AWAY), headers={"host": "rebound.example"}),
    _Fault(
        "foreign Origin",
        _over(_DB_AWAY, _KAFKA_AWAY),
        headers={"origin": "https://page.example"},
        writes_only=True,
    ),
    _Fault(
        "body over the bound",
        _over(_DB_AWAY, _KAFKA_AWAY),
        body=b'"' + b"a" * MAX_JSON_BODY_BYTES + b'"',
        writes_only=True,
    ),
    _Fault("database and Kafka away", _over(_DB_AWAY, _KAFKA_AWAY)),
    _Fault(
        "command too large for Kafka",
        _over(_DB_AWAY, Failing(MessageSizeTooLargeError("too large"))),
    ),
]
_CASES = [
    (path, method, fault)
    for path, method, _ in OPERATIONS
    for fault in _FAULTS
    if method in _WRITES or not fault.writes_only
]


def _url(path: str) -> str:
    for name in re.findall(r"{(\w+)}", path):
        path = path.replace(f"{{{name}}}", PATH_SAMPLES[name])
    return path


async def _answer(
    app: FastAPI, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        sent = {"content-type": "application/json", **headers} if body is not None else headers
        return await http.request(method, path, content=body, headers=sent)


@pytest.fixture
async def validator() -> AsyncIterator[DefinitionValidator]:
    pool = DefinitionValidator()
    yield pool
    pool.close()


@pytest.mark.parametrize(
    ("path", "method", "fault"),
    _CASES,
    ids=[f"{m.upper()} {p} {f.name}" for p, m, f in _CASES],
)
async def test_every_status_an_operation_answers_is_declared(
    validator: DefinitionValidator, path: str, method: str, fault: _Fault
) -> None:
    body = fault.body if fault.body is not None else _BODIES.get((method, path))
    response = await _answer(fault.app(validator), method, _url(path), fault.headers, body)

    declared = DOCUMENT["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, (response.status_code, response.text)
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == MEDIA_TYPE


@pytest.mark.parametrize("path", ["/api/v1/workflows", "/api/v1/workflows/validate"])
async def test_a_validation_past_its_deadline_is_a_declared_503(path: str) -> None:
    validator = DefinitionValidator(deadline_s=0)
    try:
        response = await _answer(
            _over(_DB_AWAY, _KAFKA_AWAY)(validator), "post", path, {}, _DEFINITION
        )
    finally:
        validator.close()

    assert response.status_code == 503
    assert response.json()["type"] == "urn:baton:problem:validation-busy"
    assert "503" in DOCUMENT["paths"][path]["post"]["responses"]


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
