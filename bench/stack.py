"""A fresh, production-shaped stack per benchmark phase: Kafka and PostgreSQL wiped and
started from nothing, then the engine, worker, projector and API as separate processes."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psutil

from services.adapters import infra
from services.adapters.settings import Settings
from services.cli.stack import Stack, api_url, prepare


async def stop_infra(settings: Settings) -> None:
    await asyncio.to_thread(infra.stop_kafka, settings)
    await asyncio.to_thread(infra.stop_postgres, settings)


@asynccontextmanager
async def fresh_stack(
    settings: Settings,
    log_dir: Path,
    *,
    workers: int = 1,
    concurrency: int = 64,
    seed: Callable[[], Awaitable[None]] | None = None,
    ready_timeout_s: float = 90,
) -> AsyncIterator[Stack]:
    """`seed`: run once Kafka and PostgreSQL are up, before any Baton process starts;
    `ready_timeout_s`: how long the API may take to report healthy (a seeded log must be
    projected first)."""
    await stop_infra(settings)
    shutil.rmtree(settings.home, ignore_errors=True)
    await prepare(settings)
    if seed is not None:
        await seed()
    stack = Stack(settings, log_dir)
    try:
        for name in ("engine", "projector", "api"):
            stack.start(name)
        for _ in range(workers):
            stack.start("worker", "--queue", "default", "--concurrency", str(concurrency))
        await stack.wait_api(ready_timeout_s)
        yield stack
    finally:
        stack.stop_all()
        await stop_infra(settings)


def base_url(settings: Settings) -> str:
    return api_url(settings)


def infra_processes(settings: Settings) -> dict[str, list[psutil.Process]]:
    """Kafka's JVM and PostgreSQL's server processes of this stack (found by its home)."""
    home = str(settings.home)
    found: dict[str, list[psutil.Process]] = {"kafka": [], "postgres": []}
    for p in psutil.process_iter(["cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if home not in cmd:
            continue
        if "kafka" in cmd and "java" in (p.info["name"] or "") + cmd:
            found["kafka"].append(p)
        elif "postgres" in (p.info["name"] or "") or "postgres -D" in cmd:
            found["postgres"].append(p)
    # PostgreSQL backends do not name the data directory: take the postmaster's children.
    for master in list(found["postgres"]):
        found["postgres"] += master.children(recursive=True)
    return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total
