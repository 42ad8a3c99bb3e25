"""The workload shapes (the same ones the peers run, bench/peers/peer_common.py) and a thin
API client that starts them. Steps are `noop`: what is measured is the orchestration."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

CHAIN_STEPS = 20
START_ATTEMPTS = 3
FANOUT_WIDTH = 100
# The benchmarks start instances back to back and measure each on its own: none may wait in
# the workflow's queue (SEQUENTIAL, the default, would run them one at a time).
PARALLEL = {"rule": "PARALLEL", "max": 100_000}


def chain20() -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for i in range(CHAIN_STEPS):
        step: dict[str, Any] = {"id": f"s{i}", "type": "noop"}
        if i < CHAIN_STEPS - 1:
            step["next"] = [f"s{i + 1}"]
        steps.append(step)
    return {
        "id": "bench-chain20",
        "name": "20 no-op steps in a chain",
        "run_strategy": PARALLEL,
        "steps": steps,
    }


def fanout100() -> dict[str, Any]:
    branches = [f"b{i:03d}" for i in range(FANOUT_WIDTH)]
    steps: list[dict[str, Any]] = [{"id": "fan", "type": "noop", "next": branches}]
    steps += [{"id": b, "type": "noop", "next": ["join"]} for b in branches]
    steps.append({"id": "join", "type": "noop"})
    return {
        "id": "bench-fanout100",
        "name": "fan out to 100 no-op steps, then join",
        "run_strategy": PARALLEL,
        "steps": steps,
    }


def hold() -> dict[str, Any]:
    """A live instance that costs nothing to keep: one long durable timer (engine-side)."""
    return {
        "id": "bench-hold",
        "name": "one sleep step: a live instance parked on a timer",
        "run_strategy": PARALLEL,
        "steps": [{"id": "wait", "type": "sleep", "duration": 6 * 3600}],
        "timeout": 12 * 3600,
    }


def now_us() -> int:
    return time.time_ns() // 1000


class Client:
    def __init__(self, base_url: str, connections: int = 64) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(base_url=f"{base_url}/api/v1", timeout=30, limits=limits)

    async def close(self) -> None:
        await self.http.aclose()

    async def push(self, definition: dict[str, Any], timeout: float = 60) -> None:
        """Push and wait until the version is readable (the API starts instances of a
        projected version only)."""
        r = await self.http.post("/workflows", json=definition)
        r.raise_for_status()
        deadline = time.monotonic() + timeout
        while (await self.http.get(f"/workflows/{definition['id']}")).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow {definition['id']} not visible in {timeout:g}s")
            await asyncio.sleep(0.05)

    async def start(self, workflow_id: str) -> tuple[str, int]:
        """(instance id, the client's clock just before the first request). Keyed, so a
        retry after a dropped keep-alive connection starts the same instance, not another."""
        body = {"idempotency_key": uuid.uuid4().hex}
        sent = now_us()
        for attempt in range(START_ATTEMPTS):
            try:
                r = await self.http.post(f"/workflows/{workflow_id}/instances", json=body)
                break
            except httpx.TransportError:
                if attempt == START_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05)
        r.raise_for_status()
        return str(r.json()["instance_id"]), sent
