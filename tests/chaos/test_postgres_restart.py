"""PostgreSQL stops and starts again under load: the projector survives and projects it all.

Instances run while PostgreSQL is down (the engine and the workers need no database), so the
projector meets the outage mid-batch. Afterwards the same projector process must have
projected every event exactly once (its positions are the ones committed with the rows), the
API must have answered 503 problem+json while the database was away, and the read models
must equal a rebuild from offset 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import psutil
import pytest

from services.adapters import infra
from services.adapters.embedded_pg import EmbeddedPostgres
from services.adapters.event_log import read_all_events
from services.adapters.settings import Settings
from services.api.problems import MEDIA_TYPE
from services.cli.stack import Stack
from services.domain.protocol.events import Event
from tests.chaos.test_crashes import assert_rebuild_matches, projector_caught_up
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.chaos

INSTANCES = 60
# How long the database is away: a 30 s stop, as operators see in a restart gone slow, and an
# 8 s crash (the instances' sleeps end, and their events arrive, while it is away). The outage
# is the point of the test, not a synchronisation. (A 30 s crash is told by the API as two
# outages: its pool is quiet for 10 s, the log filter ends the first, the pool's floor
# restore starts a second.)
OUTAGE_S = {"stop": 30.0, "kill-9": 8.0}


def sleepy(wid: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": "a", "type": "noop", "next": ["nap"]},
        {"id": "nap", "type": "sleep", "duration": "3s", "next": ["b"]},
        {"id": "b", "type": "noop", "next": ["c"]},
        {"id": "c", "type": "noop"},
    ]
    return {"id": wid, "run_strategy": {"rule": "PARALLEL", "max": 1000}, "steps": steps}


def kill_9_postgres(settings: Settings) -> None:
    """SIGKILL the server and every backend at once: a crash, not a shutdown (connections
    die without a word, and the next start runs crash recovery)."""
    pid_file = EmbeddedPostgres.from_settings(settings).pgdata / "postmaster.pid"
    master = psutil.Process(int(pid_file.read_text().split()[0]))
    for process in [master, *master.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs([master], timeout=10)


@pytest.mark.parametrize("how", ["stop", "kill-9"])
async def test_projector_and_api_survive_a_postgres_restart(
    baton: Baton, stack: Stack, settings: Settings, kafka: str, postgres: str, how: str
) -> None:
    wid = unique("pgdown")
    await baton.push(sleepy(wid))
    projector_pid = stack.pid("projector")
    log_offsets = {n: stack.log_path(n).stat().st_size for n in ("projector", "api")}
    ids = await asyncio.gather(*(baton.start(wid) for _ in range(INSTANCES)))

    await asyncio.to_thread(infra.stop_postgres if how == "stop" else kill_9_postgres, settings)
    down_at = time.monotonic()
    try:
        # While the database is away, reads are 503 problem+json (not 500), and so is /health.
        r = await baton.http.get(f"/instances/{ids[0]}")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == MEDIA_TYPE
        health = await baton.http.get("/health")
        assert health.status_code == 503, health.text

        # Meanwhile the engine and the workers are not affected: on the log, every instance
        # runs to its end while the database is still away.
        async def ended_in_the_log() -> bool:
            events = await read_all_events(kafka)
            return set(ids) <= {e.instance_id for e in events if e.type == "InstanceSucceeded"}

        await wait_until_async(ended_in_the_log, timeout=OUTAGE_S[how] - 3, interval=1)
        await asyncio.sleep(max(0.0, OUTAGE_S[how] - (time.monotonic() - down_at)))
    finally:
        await asyncio.to_thread(infra.start_postgres, settings)

    async def all_succeeded() -> bool:
        r = await baton.http.get("/instances", params={"workflow_id": wid, "limit": 1000})
        if r.status_code != 200:
            return False
        statuses = Counter(i["status"] for i in r.json()["items"])
        return statuses.get("SUCCEEDED", 0) == INSTANCES

    await wait_until_async(all_succeeded, timeout=120, interval=0.5, message="all projected")
    # The same process did it: it waited for the database instead of dying.
    assert stack.is_running("projector"), stack.exited()
    assert stack.pid("projector") == projector_pid
    # And told it in a few lines: the loss once, its end, no tracebacks.
    for name, offset in log_offsets.items():
        with stack.log_path(name).open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        # The projector met the outage; the API only if its pool noticed (its answers in
        # the meantime are 503s, not log lines).
        told = sum("lost the connection to PostgreSQL" in line for line in lines)
        assert told == 1 if name == "projector" else told <= 1, lines
        assert not any(line.startswith("Traceback") for line in lines), lines
        assert len(lines) < 30, lines
    await wait_until_async(
        lambda: projector_caught_up(postgres, kafka, settings.partitions), timeout=60
    )

    # Every event of these instances is projected once: the events read model holds exactly
    # the log's events, and each instance's row has seen its last one.
    by_instance: dict[str, list[Event]] = defaultdict(list)
    wanted = set(ids)
    for e in await read_all_events(kafka):
        if e.instance_id in wanted:
            by_instance[e.instance_id].append(e)
    conn = await asyncpg.connect(postgres)
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id, seq FROM events WHERE aggregate_id = ANY($1::text[])", ids
        )
        last = {
            r["instance_id"]: r["last_seq"]
            for r in await conn.fetch(
                "SELECT instance_id, last_seq FROM instances WHERE instance_id = ANY($1)", ids
            )
        }
    finally:
        await conn.close()
    projected = Counter((r["aggregate_id"], r["seq"]) for r in rows)
    logged = Counter((iid, e.seq) for iid, events in by_instance.items() for e in events)
    assert projected == logged
    assert last == {iid: events[-1].seq for iid, events in by_instance.items()}

    # And the read models equal a rebuild from offset 0.
    await assert_rebuild_matches(stack, postgres, kafka, settings.partitions)


async def test_projector_and_api_started_while_postgres_is_down_wait_for_it(
    stack: Stack, settings: Settings
) -> None:
    await asyncio.to_thread(infra.stop_postgres, settings)
    try:
        offsets = {n: stack.log_path(n).stat().st_size for n in ("projector", "api")}
        stack.restart("projector")
        stack.restart("api")

        for name, offset in offsets.items():

            def waiting_or_dead(name: str = name, offset: int = offset) -> bool:
                with stack.log_path(name).open("rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                return "PostgreSQL is unavailable" in text or not stack.is_running(name)

            await wait_until_async(waiting_or_dead, timeout=60, message=f"{name} waits")
            assert stack.is_running(name), f"{name} exited: {stack.exited()}"
        pids = {n: stack.pid(n) for n in offsets}
    finally:
        await asyncio.to_thread(infra.start_postgres, settings)
    await stack.wait_api(timeout=60)
    assert {n: stack.pid(n) for n in pids} == pids
