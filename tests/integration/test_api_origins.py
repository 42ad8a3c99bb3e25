"""Writes from web pages when the operator has allowed some origins (issue 14, item 14):
those origins may write and get CORS answers, every other origin is refused before its body
is read, and text/plain definitions are accepted only when opted in. The defaults, on the
real API process, are in tests/e2e/test_hostile_requests.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.adapters.cluster import ClusterProbe
from services.adapters.kafka import new_producer
from services.adapters.settings import Settings
from services.api.app import ApiOptions, create_app
from services.api.deps import ApiDeps
from tests.integration.api_harness import V1, Api, definition, unique

pytestmark = pytest.mark.integration

UI = "https://ui.example.com"
YAML = "id: {id}\nsteps:\n  - id: a\n    type: noop\n"


@pytest.fixture
async def configured(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """The same pool and producer as `api`, behind the options an operator chose."""
    settings = Settings.from_env(
        {
            "BATON_API_ALLOWED_ORIGINS": f"{UI}/, https://other.example.com",
            "BATON_API_TEXT_PLAIN_DEFINITIONS": "1",
        }
    )
    producer = new_producer(api.bootstrap)
    cluster = ClusterProbe(api.bootstrap)
    await producer.start()
    await cluster.start()
    deps = ApiDeps(pool=api.pool, producer=producer, codec=api.codec, cluster=cluster)
    app = create_app(deps, ApiOptions.from_settings(settings))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http
    finally:
        deps.validator.close()
        await cluster.close()
        await producer.stop()


async def test_an_allowed_origin_writes_and_gets_cors_answers(
    configured: httpx.AsyncClient,
) -> None:
    wid = unique("cors")
    response = await configured.post(
        f"{V1}/workflows",
        content=YAML.format(id=wid),
        headers={"content-type": "application/yaml", "origin": UI},
    )
    assert response.status_code == 202, response.text
    assert response.headers["access-control-allow-origin"] == UI

    preflight = await configured.options(
        f"{V1}/workflows",
        headers={
            "origin": UI,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI
    assert "POST" in preflight.headers["access-control-allow-methods"]


async def test_another_origin_is_refused_and_gets_no_cors_answer(
    configured: httpx.AsyncClient,
) -> None:
    response = await configured.post(
        f"{V1}/workflows/validate",
        json=definition("x"),
        headers={"origin": "https://evil.example.com"},
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:baton:problem:origin-not-allowed"
    assert "access-control-allow-origin" not in response.headers

    preflight = await configured.options(
        f"{V1}/workflows",
        headers={"origin": "https://evil.example.com", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_text_plain_definitions_when_opted_in(configured: httpx.AsyncClient) -> None:
    response = await configured.post(
        f"{V1}/workflows/validate",
        content=YAML.format(id="t"),
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 200, response.text


async def test_text_plain_definitions_are_415_by_default(api: Api) -> None:
    response = await api.http.post(
        f"{V1}/workflows/validate",
        content=YAML.format(id="t"),
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 415
    assert "text/plain" not in response.json()["detail"].split(";")[0]


def test_settings_refuse_what_is_not_an_origin() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        Settings.from_env({"BATON_API_ALLOWED_ORIGINS": "ui.example.com/path"})
    with pytest.raises(ValueError, match="BATON_API_TEXT_PLAIN_DEFINITIONS"):
        Settings.from_env({"BATON_API_TEXT_PLAIN_DEFINITIONS": "maybe"})
