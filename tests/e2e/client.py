"""A thin client of the real API for end-to-end tests: push, start, wait for an outcome."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import httpx
import yaml

from services.adapters.settings import Settings
from services.cli.stack import api_url
from tests.helpers import wait_until_async


class Baton:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def push(self, definition: dict[str, Any]) -> int:
        """Push and wait until the new version is visible; returns the version number."""
        wid = definition["id"]
        before = await self.http.get(f"/workflows/{wid}")
        known = before.json()["latest_version"] if before.status_code == 200 else 0
        r = await self.http.post(
            "/workflows",
            content=yaml.safe_dump(definition),
            headers={"content-type": "application/yaml"},
        )
        assert r.status_code == 202, r.text

        async def visible() -> bool:
            got = await self.http.get(f"/workflows/{wid}")
            return got.status_code == 200 and got.json()["latest_version"] > known

        await wait_until_async(visible, timeout=30, message=f"workflow {wid} version visible")
        return int((await self.http.get(f"/workflows/{wid}")).json()["latest_version"])

    async def start(
        self, workflow_id: str, params: dict[str, Any] | None = None, key: str | None = None
    ) -> str:
        body: dict[str, Any] = {"params": params or {}}
        if key:
            body["idempotency_key"] = key
        r = await self.http.post(f"/workflows/{workflow_id}/instances", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["instance_id"])

    async def instance(self, iid: str) -> dict[str, Any]:
        r = await self.http.get(f"/instances/{iid}")
        return r.json() if r.status_code == 200 else {}

    async def wait_status(self, iid: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.instance(iid)).get("status") in statuses

        try:
            await wait_until_async(reached, timeout=timeout, message=f"{iid} reaches {statuses}")
        except AssertionError as err:
            steps = {k: (v["status"], v["attempt"]) for k, v in (await self.steps(iid)).items()}
            raise AssertionError(
                f"{err}; instance {await self.instance(iid)}; steps {steps}"
            ) from None
        return await self.instance(iid)

    async def wait_step(self, iid: str, step_id: str, status: str, timeout: float = 60) -> None:
        async def reached() -> bool:
            return (await self.steps(iid)).get(step_id, {}).get("status") == status

        await wait_until_async(reached, timeout=timeout, message=f"{iid}/{step_id} is {status}")

    async def wait_until_reason(self, iid: str, step_id: str, reason: str) -> None:
        async def shown() -> bool:
            return (await self.steps(iid)).get(step_id, {}).get("reason") == reason

        await wait_until_async(shown, timeout=30, message=f"{iid}/{step_id}: {reason}")

    async def steps(self, iid: str) -> dict[str, dict[str, Any]]:
        r = await self.http.get(f"/instances/{iid}/steps")
        return {s["step_id"]: s for s in r.json()} if r.status_code == 200 else {}

    async def attempts(self, iid: str, step_id: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"/instances/{iid}/steps/{step_id}/attempts")
        assert r.status_code == 200, r.text
        return list(r.json())

    async def events(self, iid: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"/instances/{iid}/events", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def list_instances(self, **query: str) -> list[dict[str, Any]]:
        r = await self.http.get("/instances", params={**query, "limit": 500})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def act(
        self, iid: str, action: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self.http.post(f"/instances/{iid}/actions/{action}", json=body or {})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def baton_cli(settings: Settings, *args: str, exit_code: int = 0) -> str:
    """Run `baton ARGS` as its own process against the test stack's API, as a user types it;
    its output (stdout and stderr). It must exit with `exit_code`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "--api",
        api_url(settings),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    text = out.decode()
    assert process.returncode == exit_code, f"baton {' '.join(args)}:\n{text}"
    return text
