"""Session plumbing: settings and the real Kafka and PostgreSQL, started only when asked for.

Tests run against their own stack (``.baton-test/``, other ports) so they never clobber a
developer's ``make run``. The environment is set at import, before any ``Settings`` is built,
so processes that tests start inherit the same values. Unit tests request none of these
fixtures and so start no servers.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from services.adapters import infra
from services.adapters.embedded_pg import recreate_database
from services.adapters.settings import REPO_ROOT, Settings
from services.cli.stack import Stack, prepare
from tests.e2e.client import Baton
from tests.helpers import login_role

TEST_ENV = {
    "BATON_HOME": str(REPO_ROOT / ".baton-test"),
    # Below the ephemeral port range, so a client socket never holds them when a server binds.
    "KAFKA_PORT": "19192",
    "KAFKA_CONTROLLER_PORT": "19193",
    "BATON_PG_PORT": "15532",
    "BATON_API_PORT": "18080",
    # Dead workers are noticed in seconds, so the worker-crash test is quick.
    "BATON_HEARTBEAT_SECONDS": "1",
    "BATON_HEARTBEAT_TIMEOUT": "5",
    # Snapshots every 0.3 s (the default is 5 s): the engines the e2e and chaos tests start,
    # and kill, recover from a snapshot and its tail, not from the whole log.
    "BATON_SNAPSHOT_INTERVAL_MS": "300",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)

KAFKA_READY_TIMEOUT_S = 90.0
# A secret only the stack's worker holds (as E2E_WORKER_SECRET): no step may see or print it.
WORKER_SECRET = "e2e-worker-secret-5f1c"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> Iterator[str]:
    """The bootstrap servers of a Kafka cluster; a managed one starts empty each session."""
    if settings.kafka_managed:
        infra.stop_kafka(settings)  # a broker left over from an interrupted session
        shutil.rmtree(settings.home / "kafka", ignore_errors=True)
    infra.start_kafka(settings)
    try:
        infra.wait_kafka(settings, KAFKA_READY_TIMEOUT_S)
        yield settings.kafka_bootstrap
    finally:
        infra.stop_kafka(settings)


@pytest.fixture(scope="session")
def history_kafka(settings: Settings) -> Iterator[str]:
    """A managed broker of its own (ports 4 above the session's), for the tests that write
    long histories: tens of thousands of events on one partition, deleted when each test is
    done. On the session's broker every later engine would fold them, and deleting them there
    took the other tests' events with them (a later rebuild from offset 0 then differed).
    Started only for the tests that ask for it; with an external cluster, that cluster."""
    if not settings.kafka_managed:
        yield settings.kafka_bootstrap
        return
    # Its bootstrap follows from the port (a managed broker listens on 127.0.0.1).
    own = settings.model_copy(
        update={
            "home": settings.home / "history",
            "kafka_port": settings.kafka_port + 4,
            "kafka_controller_port": settings.kafka_controller_port + 4,
        }
    )
    infra.stop_kafka(own)
    shutil.rmtree(own.home / "kafka", ignore_errors=True)
    infra.start_kafka(own)
    try:
        infra.wait_kafka(own, KAFKA_READY_TIMEOUT_S)
        yield own.kafka_bootstrap
    finally:
        infra.stop_kafka(own)


@pytest.fixture(scope="session")
def postgres(settings: Settings) -> Iterator[str]:
    """The URL of an empty database ``baton``, recreated each session."""
    infra.start_postgres(settings)
    try:
        recreate_database(settings.database_url)
        yield settings.database_url
    finally:
        infra.stop_postgres(settings)


# --- the whole stack as real processes (e2e and chaos tests) -------------------------------


@pytest.fixture(scope="session")
async def stack(kafka: str, postgres: str, settings: Settings) -> AsyncIterator[Stack]:
    """Engine, worker, projector and API as separate processes on the session's Kafka/Postgres."""
    await prepare(settings)
    running = Stack(settings, settings.home / "logs")
    # The e2e workflows' http steps call a server the test starts on 127.0.0.1, and their sql
    # steps query the session's own database — as a role that only reads its tables, since
    # the worker refuses a superuser connection it was not told to allow. The DSN carries
    # the worker's secret as its password, so tests can look for it where it must not be.
    running.env["BATON_HTTP_ALLOWED_HOSTS"] = "127.0.0.1:*"
    steps_url = await login_role(settings.database_url, "baton_steps", WORKER_SECRET)
    await _grant_select(settings.database_url, "baton_steps")
    running.env["BATON_SQL_CONNECTIONS"] = json.dumps({"baton": steps_url})
    running.env["E2E_WORKER_SECRET"] = WORKER_SECRET
    running.start("engine")
    running.start("worker", "--queue", "default", "--concurrency", "16")
    running.start("projector")
    running.start("api")
    try:
        await running.wait_api(timeout=60)
        yield running
    finally:
        running.stop_all()


async def _grant_select(url: str, role: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    finally:
        await conn.close()


@pytest.fixture
async def baton(stack: Stack, settings: Settings) -> AsyncIterator[Baton]:
    base = f"http://{settings.api_host}:{settings.api_port}/api/v1"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield Baton(http)
