"""Hostile requests on the real API process (issue 14, items 3, 8 and 14): a YAML bomb is
a 422 and the API keeps answering while a slow definition is validated; SIGTERM stops it
during one; a web page cannot push a workflow (CSRF) and gets no CORS answer."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
import yaml

from services.adapters.settings import Settings
from services.cli.stack import Stack, api_url
from tests.helpers import wait_until
from tests.unit.domain.language.test_hostile_definitions import BILLION_LAUGHS

pytestmark = pytest.mark.e2e

EVIL = "https://evil.example.com"
NOOP = "id: {id}\nsteps:\n  - id: a\n    type: noop\n"


def slow_definition() -> bytes:
    """Valid YAML of about a megabyte, the costliest kind to validate: 300 steps with CEL
    expressions, padded with comments (the pure-Python scanner reads every character)."""
    steps = [
        {
            "id": f"s{i}",
            "type": "shell",
            "command": "echo ${rows}",
            "params": {
                f"p{j}": {"type": "long", "expression": " + ".join(["rows * 2"] * 6)}
                for j in range(8)
            },
            "next": [f"s{i + 1}"] if i < 299 else [],
        }
        for i in range(300)
    ]
    text = yaml.safe_dump({"id": "slow", "params": {"rows": 3}, "steps": steps})
    text = text.replace("\n", "  # " + "x" * 60 + "\n")
    return text.encode()[:990_000].rsplit(b"\n", 1)[0] + b"\n"


@pytest.fixture
async def http(stack: Stack, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url(settings), timeout=60) as client:
        yield client


def start_validation(
    http: httpx.AsyncClient, body: bytes
) -> tuple[asyncio.Task[httpx.Response], asyncio.Event]:
    """POST the body to /validate; the event is set once the whole body has been sent."""
    sent = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65_536):
            yield body[i : i + 65_536]
        sent.set()

    task = asyncio.create_task(
        http.post(
            "/api/v1/workflows/validate",
            content=chunks(),
            headers={"content-type": "application/yaml"},
        )
    )
    return task, sent


async def test_a_billion_laughs_is_422_naming_the_anchor(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/v1/workflows",
        content=BILLION_LAUGHS,
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code == 422, response.text
    (fault,) = response.json()["errors"]
    assert fault["path"] == "params.m.value.a"
    assert "anchors and aliases" in fault["message"]
    assert (await http.get("/health")).status_code == 200


async def test_deep_json_is_422_naming_the_path(http: httpx.AsyncClient) -> None:
    deep = '{"id":"w","tags":' + "[" * 5_000 + "]" * 5_000 + ',"steps":[{"id":"a","type":"noop"}]}'
    response = await http.post(
        "/api/v1/workflows/validate", content=deep, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    (fault,) = response.json()["errors"]
    assert fault["path"].startswith("tags[0][0]")


async def test_health_answers_while_a_slow_definition_is_validated(
    http: httpx.AsyncClient,
) -> None:
    body = slow_definition()
    started = [start_validation(http, body) for _ in range(3)]
    await asyncio.gather(*(sent.wait() for _, sent in started))
    validations = [task for task, _ in started]
    answered_meanwhile = 0
    while not all(v.done() for v in validations):
        health = await http.get("/health")
        assert health.status_code == 200
        if not all(v.done() for v in validations):
            answered_meanwhile += 1
    for v in validations:
        assert v.result().status_code in (200, 422), v.result().text
    # With validation on the event loop, a probe was answered only between two validations.
    assert answered_meanwhile >= 10


async def test_sigterm_stops_the_api_during_a_slow_validation(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    validation, sent = start_validation(http, slow_definition())
    await sent.wait()
    stack.kill("api", signal.SIGTERM)
    try:
        # Within uvicorn's graceful shutdown (5 s) and the validation's own bounded end; the
        # validation answers, or its connection is closed.
        await asyncio.to_thread(
            wait_until, lambda: not stack.is_running("api"), 30, 0.1, "the API exits"
        )
        assert stack.exited()["api"] == 0  # it unwound, closing the producer and the pool
    finally:
        validation.cancel()
        stack.restart("api")
        await stack.wait_api(60)


async def test_a_web_page_cannot_push_a_workflow(http: httpx.AsyncClient) -> None:
    """What a page on any site can send without a preflight: text/plain, a form; and JSON
    from a foreign origin. None is accepted, none is published."""
    wid = "csrf_victim"
    forged = await http.post(
        "/api/v1/workflows",
        content=NOOP.format(id=wid),
        headers={"content-type": "text/plain", "origin": EVIL},
    )
    assert forged.status_code == 403, forged.text
    assert forged.json()["type"] == "urn:baton:problem:origin-not-allowed"
    form = await http.post(
        f"/api/v1/workflows/{wid}/instances",
        data={"x": "1"},
        headers={"origin": "null"},
    )
    assert form.status_code == 403
    json_push = await http.post(
        "/api/v1/workflows/validate",
        content=NOOP.format(id=wid),
        headers={"content-type": "application/yaml", "origin": EVIL},
    )
    assert json_push.status_code == 403
    # text/plain without an Origin (not a browser) is refused as a media type.
    plain = await http.post(
        "/api/v1/workflows",
        content=NOOP.format(id=wid),
        headers={"content-type": "text/plain"},
    )
    assert plain.status_code == 415
    assert (await http.get(f"/api/v1/workflows/{wid}")).status_code == 404


async def test_the_apis_own_origin_and_clients_without_one_may_write(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    for origin in (f"http://127.0.0.1:{settings.api_port}", None):
        headers = {"content-type": "application/yaml"}
        if origin:
            headers["origin"] = origin
        response = await http.post(
            "/api/v1/workflows/validate", content=NOOP.format(id="own"), headers=headers
        )
        assert response.status_code == 200, (origin, response.text)


async def test_cors_is_closed_by_default(http: httpx.AsyncClient) -> None:
    read = await http.get("/api/v1/workflows", headers={"origin": EVIL})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers
    preflight = await http.options(
        "/api/v1/workflows",
        headers={"origin": EVIL, "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_a_rebound_name_is_refused(http: httpx.AsyncClient, settings: Settings) -> None:
    """DNS rebinding: a page on evil.example.com, its name now resolving to 127.0.0.1, would be
    same-origin with the API; its requests name its own host."""
    refused = await http.get("/api/v1/workflows", headers={"host": "evil.example.com:18080"})
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:baton:problem:host-not-allowed"
    for host in (f"127.0.0.1:{settings.api_port}", f"localhost:{settings.api_port}"):
        assert (await http.get("/health", headers={"host": host})).status_code == 200
