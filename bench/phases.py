"""The benchmark phases. Each returns plain data (lists of milliseconds, counts) for the report;
each runs against its own fresh stack (bench/stack.py).

Definitions (DESIGN §6; all times from events — see bench/tap.py):
- step launch: chain step i's StepAttemptSucceeded.caused_at (the worker reported the result)
  -> step i+1's StepAttemptStarted.caused_at (a worker reported the next attempt started);
- start: InstanceStarted.caused_at (the API issued the start, having accepted the request)
  -> s0's StepAttemptStarted.caused_at; also from the client's clock before the request;
- chain / fan-out end to end: the client's clock before the request -> the last step's (the
  join's) StepAttemptSucceeded.caused_at;
- throughput: StepAttemptSucceeded per second (by caused_at) in the window; projection lag:
  an event's occurred_at -> the commit of the read-model transaction that holds its row
  (pg_xact_commit_timestamp);
- recovery: kill -9 of the engine -> the first attempt created by the restarted engine
  starting on a worker;
- memory: the engine's RSS with N live instances parked on a durable timer, minus its RSS
  before they started, over N.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.stack import cpu_seconds, fresh_stack, infra_processes
from bench.tap import EventTap
from bench.workloads import CHAIN_STEPS, Client, chain20, fanout100, hold, now_us
from services.adapters.settings import Settings
from services.cli.stack import Stack, api_url
from services.domain.protocol.events import (
    Event,
    InstanceStarted,
    StepAttemptCreated,
    StepAttemptStarted,
    StepAttemptSucceeded,
)

WARMUP_CHAINS = 3
END_TIMEOUT_S = 120


@dataclass
class Sizes:
    chains: int = 50
    fanouts: int = 10
    throughput_seconds: float = 60.0
    throughput_warmup_seconds: float = 10.0
    concurrency: int = 200
    workers: int = 1
    worker_concurrency: int = 64
    memory_points: tuple[int, ...] = (1_000, 10_000)
    recovery_flow: int = 8
    # history: finished instances seeded before the engine starts, and live ones beside them.
    history_points: tuple[int, ...] = (0, 10_000, 100_000, 1_000_000)
    history_live: int = 10_000
    foreach_iterations: int = 25_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            chains=10,
            fanouts=2,
            throughput_seconds=15,
            throughput_warmup_seconds=3,
            concurrency=50,
            memory_points=(200, 1_000),
            history_points=(0, 10_000),
            history_live=1_000,
            foreach_iterations=2_000,
        )


@dataclass
class PhaseContext:
    settings: Settings
    log_root: Path
    sizes: Sizes


@dataclass
class ChainTimes:
    launch: list[float] = field(default_factory=list)
    launch_engine: list[float] = field(default_factory=list)  # engine clock at both ends
    report_to_decide: list[float] = field(default_factory=list)  # worker report -> engine
    decide_to_start: list[float] = field(default_factory=list)  # engine -> next start
    start_api: list[float] = field(default_factory=list)
    start_client: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)


def _ms(a: int, b: int) -> float:
    return (b - a) / 1000


def _caused(e: Event) -> int:
    if e.caused_at is None:
        raise RuntimeError(f"{e.event_id} ({e.type}) has no caused_at: events older than v2?")
    return e.caused_at


def _by_step(events: list[Event]) -> tuple[dict[str, Event], dict[str, Event]]:
    started: dict[str, Event] = {}
    succeeded: dict[str, Event] = {}
    for e in events:
        p = e.payload
        if isinstance(p, StepAttemptStarted):
            started.setdefault(p.step_id, e)
        elif isinstance(p, StepAttemptSucceeded):
            succeeded.setdefault(p.step_id, e)
    return started, succeeded


def chain_times(tap: EventTap, sent: dict[str, int]) -> ChainTimes:
    out = ChainTimes()
    names = [f"s{i}" for i in range(CHAIN_STEPS)]
    for iid, t0 in sent.items():
        events = tap.by_instance[iid]
        started, succeeded = _by_step(events)
        if not all(n in started and n in succeeded for n in names):
            raise RuntimeError(f"chain {iid} is incomplete: {[e.type for e in events]}")
        for a, b in itertools.pairwise(names):
            done, nxt = succeeded[a], started[b]
            out.launch.append(_ms(_caused(done), _caused(nxt)))
            out.launch_engine.append(_ms(done.occurred_at, nxt.occurred_at))
            out.report_to_decide.append(_ms(_caused(done), done.occurred_at))
            out.decide_to_start.append(_ms(done.occurred_at, _caused(nxt)))
        first = _caused(started["s0"])
        instance_started = next(e for e in events if isinstance(e.payload, InstanceStarted))
        out.start_api.append(_ms(_caused(instance_started), first))
        out.start_client.append(_ms(t0, first))
        out.e2e.append(_ms(t0, _caused(succeeded[names[-1]])))
    return out


async def _run_one(client: Client, tap: EventTap, workflow_id: str) -> tuple[str, int]:
    iid, sent = await client.start(workflow_id)
    ended = await tap.wait_ended(iid, END_TIMEOUT_S)
    if ended.type != "InstanceSucceeded":
        raise RuntimeError(f"{workflow_id} instance {iid} ended {ended.type}")
    return iid, sent


@dataclass
class Session:
    """A phase's fresh stack, the tap on its events and an API client."""

    stack: Stack
    tap: EventTap
    client: Client


@asynccontextmanager
async def session(
    ctx: PhaseContext,
    phase: str,
    *,
    workers: int = 1,
    connections: int = 64,
    seed: Callable[[], Awaitable[None]] | None = None,
    ready_timeout_s: float = 90,
) -> AsyncIterator[Session]:
    settings = ctx.settings
    async with fresh_stack(
        settings,
        ctx.log_root / phase,
        workers=workers,
        concurrency=ctx.sizes.worker_concurrency,
        seed=seed,
        ready_timeout_s=ready_timeout_s,
    ) as stack:
        tap = EventTap(settings.kafka_bootstrap, settings.partitions)
        await tap.start()
        client = Client(api_url(settings), connections=connections)
        try:
            yield Session(stack, tap, client)
        finally:
            await client.close()
            await tap.stop()


# -- phase 1: latency ------------------------------------------------------------------------


async def latency(ctx: PhaseContext) -> dict[str, Any]:
    s, settings = ctx.sizes, ctx.settings
    async with session(ctx, "latency") as run:
        tap, client = run.tap, run.client
        conn = await asyncpg.connect(settings.database_url)
        postgres_version = str(await conn.fetchval("SHOW server_version"))
        await conn.close()
        await client.push(chain20())
        await client.push(fanout100())
        for _ in range(WARMUP_CHAINS):  # connections, JIT-free but cache-warm paths
            await _run_one(client, tap, "bench-chain20")
        chains: dict[str, int] = {}
        for _ in range(s.chains):  # one at a time: latency, not load
            iid, sent = await _run_one(client, tap, "bench-chain20")
            chains[iid] = sent
        fanouts: dict[str, int] = {}
        for _ in range(s.fanouts):
            iid, sent = await _run_one(client, tap, "bench-fanout100")
            fanouts[iid] = sent
    times = chain_times(tap, chains)
    fan_e2e = []
    for iid, t0 in fanouts.items():
        _, succeeded = _by_step(tap.by_instance[iid])
        fan_e2e.append(_ms(t0, _caused(succeeded["join"])))
    return {
        "postgres_version": postgres_version,
        "step_launch_ms": times.launch,
        "step_launch_engine_ms": times.launch_engine,
        "report_to_decide_ms": times.report_to_decide,
        "decide_to_start_ms": times.decide_to_start,
        "start_api_ms": times.start_api,
        "start_ms": times.start_client,
        "chain20_ms": times.e2e,
        "fanout100_ms": fan_e2e,
    }


# -- phase 2: throughput -----------------------------------------------------------------------


def _stack_processes(stack: Stack, settings: Settings) -> dict[str, list[psutil.Process]]:
    procs: dict[str, list[psutil.Process]] = {}
    for name in stack.names():
        pid = stack.pid(name)
        if pid is not None:
            procs[name] = [psutil.Process(pid)]
    procs.update(infra_processes(settings))
    procs["bench (load generator and event tap)"] = [psutil.Process()]
    return procs


async def throughput(ctx: PhaseContext) -> dict[str, Any]:
    s, settings = ctx.sizes, ctx.settings
    async with session(
        ctx, "throughput", workers=s.workers, connections=min(s.concurrency, 128)
    ) as run:
        stack, tap, client = run.stack, run.tap, run.client
        await client.push(chain20())
        for _ in range(WARMUP_CHAINS):
            await _run_one(client, tap, "bench-chain20")
        begin = now_us()
        measure_from = begin + int(s.throughput_warmup_seconds * 1e6)
        stop_at = measure_from + int(s.throughput_seconds * 1e6)
        completed = 0

        async def loop() -> None:
            nonlocal completed
            while now_us() < stop_at:
                await _run_one(client, tap, "bench-chain20")
                completed += 1

        procs = _stack_processes(stack, settings)
        cpu_before: dict[str, float] = {}
        loops = [asyncio.create_task(loop()) for _ in range(s.concurrency)]
        await asyncio.sleep(s.throughput_warmup_seconds)
        cpu_before = {k: cpu_seconds(v) for k, v in procs.items()}
        wall_before = time.monotonic()
        await asyncio.sleep(s.throughput_seconds)
        cpu = {
            k: (cpu_seconds(v) - cpu_before[k]) / (time.monotonic() - wall_before)
            for k, v in procs.items()
        }
        await asyncio.gather(*loops)
        lag = await _projection_lag(settings, tap, measure_from, stop_at)
    attempts = [
        e.caused_at
        for events in tap.by_instance.values()
        for e in events
        if isinstance(e.payload, StepAttemptSucceeded)
        and e.caused_at is not None
        and measure_from <= e.caused_at < stop_at
    ]
    return {
        "throughput_steps_per_s": len(attempts) / s.throughput_seconds,
        "throughput_seconds": s.throughput_seconds,
        "throughput_instances": completed,
        "concurrency": s.concurrency,
        "workers": s.workers,
        "projection_lag_ms": lag,
        "cpu_cores_by_process": cpu,
    }


async def _projection_lag(
    settings: Settings, tap: EventTap, lo: int, hi: int, timeout: float = 120
) -> list[float]:
    """Waits until every event of the window is projected, then reads when each row's
    transaction committed."""
    wanted = sum(1 for evs in tap.by_instance.values() for e in evs if lo <= e.occurred_at < hi)
    conn = await asyncpg.connect(settings.database_url)
    try:
        deadline = time.monotonic() + timeout
        query_lo, query_hi = lo / 1e6, hi / 1e6
        while True:
            n = await conn.fetchval(
                "SELECT count(*) FROM events WHERE instance_id IS NOT NULL"
                " AND occurred_at >= to_timestamp($1) AND occurred_at < to_timestamp($2)",
                query_lo,
                query_hi,
            )
            if n >= wanted:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"projection incomplete: {n} of {wanted} rows")
            await asyncio.sleep(0.5)
        rows = await conn.fetch(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - occurred_at) * 1000"
            " AS lag FROM events WHERE instance_id IS NOT NULL"
            " AND occurred_at >= to_timestamp($1) AND occurred_at < to_timestamp($2)",
            query_lo,
            query_hi,
        )
        return [float(r["lag"]) for r in rows if r["lag"] is not None]
    finally:
        await conn.close()


# -- phase 3: memory, then recovery ---------------------------------------------------------------


async def _start_many(client: Client, workflow_id: str, n: int, parallel: int = 64) -> list[str]:
    ids: list[str] = []
    queue = iter(range(n))

    async def one() -> None:
        for _ in queue:
            iid, _ = await client.start(workflow_id)
            ids.append(iid)

    await asyncio.gather(*(one() for _ in range(parallel)))
    return ids


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def memory_and_recovery(ctx: PhaseContext) -> dict[str, Any]:
    s = ctx.sizes
    async with session(ctx, "recovery") as run:
        stack, tap, client = run.stack, run.tap, run.client
        await client.push(hold())
        await client.push(chain20())
        for _ in range(WARMUP_CHAINS):
            await _run_one(client, tap, "bench-chain20")
        engine_pid = stack.pid("engine")
        assert engine_pid is not None
        rss0 = _rss(engine_pid)
        points = []
        live: list[str] = []
        parked: set[str] = set()

        def park(e: Event) -> None:
            if isinstance(e.payload, StepAttemptStarted) and e.instance_id is not None:
                parked.add(e.instance_id)

        tap.on_event = park
        for target in s.memory_points:
            live += await _start_many(client, "bench-hold", target - len(live))
            wanted = set(live)
            await tap.wait_until(
                lambda: parked.issuperset(wanted),  # noqa: B023 (awaited in this iteration)
                600,
                f"{len(live)} instances parked on their timer",
                interval=0.5,
            )
            await asyncio.sleep(1)  # let the engine settle its allocations
            rss = _rss(engine_pid)
            points.append(
                {
                    "live_instances": len(live),
                    "engine_rss_bytes": rss,
                    "engine_rss_baseline_bytes": rss0,
                    "bytes_per_instance": (rss - rss0) / len(live),
                }
            )
        tap.on_event = None
        recovery = await _recovery(stack, client, tap, s.recovery_flow, len(live))
    return {"memory": points, "recovery": recovery}


async def _recovery(
    stack: Stack, client: Client, tap: EventTap, flow: int, live: int
) -> dict[str, Any]:
    """Chains keep flowing; the engine is killed with SIGKILL and started again at once (as a
    supervisor would); the time until an attempt created by the new engine starts on a
    worker."""
    created_after: dict[tuple[str, str, int], int] = {}
    first_created: list[int] = []
    first_started: list[int] = []
    kill_at = [0]

    def watch(e: Event) -> None:
        if not kill_at[0] or e.instance_id is None:
            return
        p = e.payload
        if isinstance(p, StepAttemptCreated) and e.occurred_at > kill_at[0]:
            created_after[(e.instance_id, p.step_id, p.attempt)] = e.occurred_at
            if not first_created:
                first_created.append(e.occurred_at)
        elif (
            isinstance(p, StepAttemptStarted)
            and (e.instance_id, p.step_id, p.attempt) in created_after
            and not first_started
            and e.caused_at is not None
        ):
            first_started.append(e.caused_at)

    tap.on_event = watch
    stopping = False

    async def loop() -> None:
        while not stopping:
            await _run_one(client, tap, "bench-chain20")

    loops = [asyncio.create_task(loop()) for _ in range(flow)]
    try:
        await asyncio.sleep(5)  # steps are flowing
        kill_at[0] = now_us()
        stack.kill("engine")
        restarted_at = now_us()
        stack.restart("engine")
        await tap.wait_until(lambda: bool(first_started), 300, "steps flowing after the kill")
    finally:
        stopping = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*loops), END_TIMEOUT_S)
        tap.on_event = None
    return {
        "live_instances": live,
        "flowing_chains": flow,
        "kill_to_restart_ms": _ms(kill_at[0], restarted_at),
        "kill_to_first_decision_ms": _ms(kill_at[0], first_created[0]),
        "kill_to_steps_flowing_ms": _ms(kill_at[0], first_started[0]),
    }


PHASES: dict[str, Callable[[PhaseContext], Any]] = {
    "latency": latency,
    "throughput": throughput,
    "recovery": memory_and_recovery,
}
