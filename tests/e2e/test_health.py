"""`/health` on the running stack tells the truth: every process kind live, the projection's
lag measured, and 503 naming the process that is gone."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from services.adapters.settings import Settings
from services.api.problems import MEDIA_TYPE
from services.cli.stack import Stack, api_url
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


async def _health(settings: Settings) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{api_url(settings)}/health")


async def test_health_reports_processes_and_lag(baton: Baton, settings: Settings) -> None:
    wid = unique("health")
    await baton.push({"id": wid, "steps": [{"id": "a", "type": "shell", "command": "true"}]})
    await baton.wait_status(await baton.start(wid), "SUCCEEDED")

    async def healthy() -> dict[str, Any] | None:
        r = await _health(settings)
        return r.json() if r.status_code == 200 else None

    await wait_until_async(healthy, timeout=30, message="/health is 200")
    body = (await _health(settings)).json()
    assert body["status"] == "ok"
    assert body["database"] == "ok" and body["kafka"] == "ok" and body["producer"] == "ok"
    for kind in ("engine", "worker", "projector"):
        assert body["processes"][kind]["members"] >= 1, (kind, body)
        assert body["processes"][kind]["live"] is True
    assert body["queues"]["default"] >= 1
    projection = body["projection"]
    assert projection["lag"] == sum(projection["partitions"].values())
    assert len(projection["partitions"]) == settings.partitions


async def test_health_is_503_when_the_projector_is_gone(stack: Stack, settings: Settings) -> None:
    stack.kill("projector", signal.SIGKILL)
    try:

        async def degraded() -> bool:
            return (await _health(settings)).status_code == 503

        # A killed member leaves its group after the session timeout (10 s).
        await wait_until_async(degraded, timeout=30, message="/health turns 503")
        r = await _health(settings)
        assert r.headers["content-type"] == MEDIA_TYPE
        body = r.json()
        assert body["type"] == "urn:baton:problem:unhealthy"
        assert [e["path"] for e in body["errors"]] == ["processes.projector"]
        assert body["health"]["processes"]["projector"] == {"live": False, "members": 0}
        assert body["health"]["processes"]["engine"]["live"] is True
    finally:
        stack.restart("projector")
    await stack.wait_api(timeout=60)
