"""What the server answers to hostile input and to OPTIONS, checked against its document: a
NUL byte or a number past int4 in any path or query parameter, bodies JSON cannot decode or
that hold a NUL, body integers, and the methods of a path."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.api.body_rules import may_hold_nul, nul_paths
from services.api.common import OrjsonResponse
from services.api.dto import ActivateBody, InstanceCreate, SignalCreate
from services.api.problems import MEDIA_TYPE
from tests.unit.api.api_app import (
    DOCUMENT,
    HTTP_METHODS,
    OPERATIONS,
    PATH_SAMPLES,
    Failing,
    app_over,
    client_without_io,
)
from tests.unit.api.api_app import member_schemas as _schemas

_ENCODINGS = ("utf-8", "utf-16", "utf-16-le", "utf-32", "utf-32-be")
_NO_DB = Failing(ConnectionRefusedError(111, "Connection refused"))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_without_io():
        yield http


# -- what the server answers ---------------------------------------------------------------


def _url(path: str, hostile: str | None = None, value: str = "") -> str:
    out = path
    for name in re.findall(r"{(\w+)}", path):
        sample = value if name == hostile else PATH_SAMPLES[name]
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
        # Valid JSON, but past the digits Python converts to an int (a ValueError that is no
        # JSONDecodeError: a 500 once the guard answered malformed JSON itself).
        (
            b'{"name": "s", "payload": {"a": ' + b"1" * 5000 + b"}}",
            "a number may have at most 4300 digits",
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


_GUARD_MESSAGES = ("the body is not valid JSON: Expecting value", "nested more than 64 levels deep")


async def test_malformed_json_is_answered_by_the_body_guard_at_any_depth(
    client: httpx.AsyncClient,
) -> None:
    """JsonBodyGuard reports malformed JSON itself; FastAPI's decoder, a few frames deeper in
    the stack, never sees it. (On main a malformed body about 960 deep passed the guard's
    json.loads as a syntax error and then met RecursionError in FastAPI's: "nested too
    deeply", a third answer to the same body.) A body of blanks is malformed too."""
    bodies = [b"[" * depth + b"x" for depth in range(930, 1000)] + [b" ", b"\n"]
    answers = set()
    for body in bodies:
        response = await client.post(
            "/api/v1/signals", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        answers.add(error["message"].split(" (at character")[0])

    assert answers <= set(_GUARD_MESSAGES), answers


async def test_a_body_nested_past_the_decoders_limit_is_a_422_at_the_level_it_passed(
    client: httpx.AsyncClient,
) -> None:
    body = b"[" * 100_000 + b"]" * 100_000

    response = await client.post(
        "/api/v1/signals", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    [error] = response.json()["errors"]
    assert error["path"].startswith("[0][0]")
    assert error["message"] == "nested more than 64 levels deep"


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


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from("a\x00\\u0")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet=st.sampled_from("k\x00\\u0"), max_size=3), inner)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, ensure_ascii=st.booleans(), encoding=st.sampled_from(_ENCODINGS))
def test_the_byte_scan_never_misses_a_nul_the_walk_would_find(
    value: Any, ensure_ascii: bool, encoding: str
) -> None:
    """The guard walks a body for NUL only when `may_hold_nul` says it may hold one: it must
    say so for every body that does, in every encoding json.loads reads."""
    text = json.dumps(value, ensure_ascii=ensure_ascii).encode(encoding)

    assert json.loads(text) == value
    if any(nul_paths(value)):
        assert may_hold_nul(text)


async def test_a_nul_in_a_utf16_body_is_found_and_a_written_backslash_u0000_is_no_nul() -> None:
    app = app_over(_NO_DB, Failing(KafkaConnectionError("away")))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        utf16 = json.dumps({"name": "s", "sender": "a\x00b"}).encode("utf-16")
        refused = await http.post(
            "/api/v1/signals", content=utf16, headers={"content-type": "application/json"}
        )
        # The characters backslash, u, 0, 0, 0, 0: no NUL, so the body reaches Kafka (away).
        written = await http.post("/api/v1/signals", json={"name": "s", "sender": "a\\u0000b"})

    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"path": "sender", "message": "a string may not hold a NUL character"}
    ]
    assert written.status_code == 503, written.text
    assert written.json()["type"] == "urn:baton:problem:publish-failed"


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
