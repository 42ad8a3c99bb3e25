"""The broker stops for a while and comes back: the processes' logs stay short, the stack works.

Every process keeps retrying its connections while Kafka is down; each retry used to log a
line (about 1,000 lines/s across the stack). The outage must show in each log as a handful of
lines (the first loss, a periodic summary, the end with its duration), and afterwards an
instance must run to its end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from services.adapters import infra
from services.adapters.settings import Settings
from services.cli.stack import Stack, api_url
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.chaos

# Long enough for every client's retries to repeat many times over (the outage is the point
# of the test, not a synchronisation).
OUTAGE_S = 30.0
MAX_LINES = 50
PROCESSES = ("engine", "worker", "projector", "api")


def _lines_since(path: Path, offset: int) -> list[str]:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


async def test_a_broker_outage_is_a_few_log_lines_and_the_stack_recovers(
    baton: Baton, stack: Stack, settings: Settings
) -> None:
    wid = unique("outage")
    await baton.push({"id": wid, "steps": [{"id": "a", "type": "shell", "command": "true"}]})
    await baton.wait_status(await baton.start(wid), "SUCCEEDED")
    offsets = {name: stack.log_path(name).stat().st_size for name in PROCESSES}

    await asyncio.to_thread(infra.stop_kafka, settings)
    try:
        # /health says Kafka is away (within its 2 s bound), not "ok".
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(f"{api_url(settings)}/health")
        assert r.status_code == 503, r.text
        assert "kafka" in [e["path"] for e in r.json()["errors"]], r.text
        # A start answers within its bound (it used to hang past a 60 s client timeout):
        # 503, Retry-After, and the instance it tried, which may still start later.
        start = {"idempotency_key": "during-the-outage"}
        timed_out = await baton.http.post(f"/workflows/{wid}/instances", json=start, timeout=15)
        assert timed_out.status_code == 503, timed_out.text
        assert timed_out.json()["type"] == "urn:baton:problem:publish-timeout"
        assert int(timed_out.headers["retry-after"]) > 0
        tried = timed_out.json()["instance_id"]
        # Right after, nothing is queued behind it: refused at once, and /health says why.
        refused = await baton.http.post(f"/workflows/{wid}/instances", json={}, timeout=2)
        assert refused.status_code == 503
        assert refused.json()["type"] == "urn:baton:problem:kafka-unavailable"
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(f"{api_url(settings)}/health")
        assert r.json()["health"]["producer"] == "unavailable", r.text
        await asyncio.sleep(OUTAGE_S)
    finally:
        await asyncio.to_thread(infra.start_kafka, settings)
        await asyncio.to_thread(infra.wait_kafka, settings, 90)

    # The stack works again: every process kind is back in its group, and an instance runs.
    await stack.wait_api(timeout=120)
    await baton.wait_status(await baton.start(wid), "SUCCEEDED", timeout=120)
    # The start that timed out, sent again with its key, is that one instance: it ran once.
    assert await baton.start(wid, key="during-the-outage") == tried
    await baton.wait_status(tried, "SUCCEEDED", timeout=120)
    instances = await baton.http.get("/instances", params={"workflow_id": wid, "limit": 100})
    assert [i["instance_id"] for i in instances.json()["items"]].count(tried) == 1
    assert not stack.exited(), stack.exited()

    # Each process says when its outage ended, with its length.
    def ended() -> bool:
        return all(
            any("is reachable again" in line for line in _lines_since(stack.log_path(n), o))
            for n, o in offsets.items()
        )

    await wait_until_async(ended, timeout=60, interval=0.5, message="every log tells the end")
    counts = {}
    for name in PROCESSES:
        lines = _lines_since(stack.log_path(name), offsets[name])
        counts[name] = len(lines)
        print(f"---- {name}: {len(lines)} lines", *lines[:80], sep="\n")
        assert sum("lost the connection to Kafka" in line for line in lines) == 1, name
    assert all(n < MAX_LINES for n in counts.values()), counts


async def test_the_worker_and_api_started_while_the_broker_is_down_wait_for_it(
    baton: Baton, stack: Stack, settings: Settings
) -> None:
    names = ("worker", "api")
    await asyncio.to_thread(infra.stop_kafka, settings)
    try:
        offsets = {n: stack.log_path(n).stat().st_size for n in names}
        for name in names:
            stack.restart(name)
        for name, offset in offsets.items():

            def waiting_or_dead(name: str = name, offset: int = offset) -> bool:
                lines = _lines_since(stack.log_path(name), offset)
                return any("lost the connection to Kafka" in ln for ln in lines) or (
                    not stack.is_running(name)
                )

            await wait_until_async(waiting_or_dead, timeout=60, message=f"{name} waits")
            assert stack.is_running(name), f"{name} exited: {stack.exited()}"
        pids = {n: stack.pid(n) for n in names}
    finally:
        await asyncio.to_thread(infra.start_kafka, settings)
        await asyncio.to_thread(infra.wait_kafka, settings, 90)
    await stack.wait_api(timeout=120)
    assert {n: stack.pid(n) for n in names} == pids
    wid = unique("late")
    await baton.push({"id": wid, "steps": [{"id": "a", "type": "shell", "command": "true"}]})
    await baton.wait_status(await baton.start(wid), "SUCCEEDED", timeout=120)
