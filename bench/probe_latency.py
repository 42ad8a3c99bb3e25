"""An informal latency probe, not the benchmark (issue 3 builds that in bench/).

Starts the stack (managed Kafka and PostgreSQL, one engine, worker, projector, API as separate
processes), runs N 20-step chains of noop steps one at a time, and reads the events back from
Kafka. All times come from the events (the engine's clock), not from polling the API:

- step launch gap: s[i] StepAttemptSucceeded -> s[i+1] StepAttemptStarted (the next attempt
  reported started by a worker);
- start: InstanceStarted -> s0 StepAttemptStarted;
- chain: InstanceStarted -> InstanceSucceeded.

    BATON_HOME=.baton-probe KAFKA_PORT=19592 KAFKA_CONTROLLER_PORT=19593 \\
        BATON_PG_PORT=16832 BATON_API_PORT=18580 .venv/bin/python bench/probe_latency.py
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx

from services.adapters.event_log import read_all_events
from services.adapters.settings import Settings
from services.cli.stack import Stack, prepare
from services.domain.events import Event, StepAttemptStarted, StepAttemptSucceeded

STEPS = 20


def chain() -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for i in range(STEPS):
        step: dict[str, Any] = {"id": f"s{i}", "type": "noop"}
        if i < STEPS - 1:
            step["next"] = [f"s{i + 1}"]
        steps.append(step)
    return {"id": "probe-chain20", "steps": steps}


async def run_chains(base: str, n: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.post("/workflows", json=chain())
        r.raise_for_status()
        for _ in range(300):
            if (await c.get("/workflows/probe-chain20")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        ids = []
        for _ in range(n):  # one at a time: this measures latency, not throughput
            r = await c.post("/workflows/probe-chain20/instances", json={})
            r.raise_for_status()
            iid = r.json()["instance_id"]
            ids.append(iid)
            for _ in range(1200):
                if (await c.get(f"/instances/{iid}")).json().get("status") == "SUCCEEDED":
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"{iid} did not succeed")
        return ids


def quantile(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(events: list[Event]) -> None:
    by: dict[str, list[Event]] = {}
    for e in events:
        by.setdefault(e.instance_id or "", []).append(e)
    gaps, starts, chains = [], [], []
    for evs in by.values():
        succeeded = {
            e.payload.step_id: e.occurred_at
            for e in evs
            if isinstance(e.payload, StepAttemptSucceeded)
        }
        started = {
            e.payload.step_id: e.occurred_at
            for e in evs
            if isinstance(e.payload, StepAttemptStarted)
        }
        gaps += [(started[f"s{i + 1}"] - succeeded[f"s{i}"]) / 1000 for i in range(STEPS - 1)]
        starts.append((started["s0"] - evs[0].occurred_at) / 1000)
        chains.append((evs[-1].occurred_at - evs[0].occurred_at) / 1000)
    for name, xs in (
        ("step launch gap", gaps),
        ("start -> s0 started", starts),
        ("20-step chain", chains),
    ):
        print(
            f"{name:20} n={len(xs):4}  p50 {quantile(xs, 0.5):7.1f} ms  p90 {quantile(xs, 0.9):7.1f} ms"
            f"  p99 {quantile(xs, 0.99):7.1f} ms  max {max(xs):7.1f} ms"
        )


async def main(n: int) -> None:
    settings = Settings.from_env()
    await prepare(settings)
    stack = Stack(settings, settings.home / "logs-probe")
    for name in ("engine", "projector", "api"):
        stack.start(name)
    stack.start("worker", "--queue", "default", "--concurrency", "8")
    try:
        await stack.wait_api(60)
        ids = await run_chains(f"http://127.0.0.1:{settings.api_port}/api/v1", n)
        wanted = set(ids)
        report(
            [e for e in await read_all_events(settings.kafka_bootstrap) if e.instance_id in wanted]
        )
    finally:
        stack.stop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="chains to run (default 20)")
    asyncio.run(main(parser.parse_args().n))
