"""The projector against real Kafka and PostgreSQL: events decided by the domain, produced to
an events topic, projected in-process; then the rebuild invariant (DESIGN §3.1).

The test owns a database, a consumer group and an events topic of its own: it writes garbage
to that topic on purpose, and the engines of later tests fold the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections import ALL_TABLES, apply_batch
from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics
from services.adapters.settings import Settings
from services.domain.protocol.commands import ReportAttemptStarted
from tests.helpers import wait_until_async
from tests.integration.projector_harness import (
    EVENTS,
    PROJECTION_TIMEOUT_S,
    create_topic,
    dead_letters,
    instance_statuses,
    migrated_pool,
    produce,
    produce_garbage,
    running,
    snapshot,
    wait_caught_up,
)
from tests.integration.projector_scenario import assert_rows, build_scenario

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(postgres, "baton_projector") as pool:
        yield pool


async def test_projection_from_the_log_and_its_rebuild(
    kafka: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    await ensure_topics(kafka, settings.partitions)
    await create_topic(kafka, EVENTS, settings.partitions)
    codec = Codec()
    sc = build_scenario()
    expected = {r.instance_id: f"{r.final.status.value}@{r.final.seq}" for r in sc.runs}

    # A malformed record ahead of the events of one instance, in the same partition: the
    # projector must dead-letter it and keep going.
    bad_partition, bad_offset = await produce_garbage(kafka, sc.succeeded.instance_id)
    await produce(kafka, codec, list(sc.events()))

    async def instances_final() -> bool:
        return await instance_statuses(pool, list(expected)) == expected

    async def same_positions() -> bool:
        return (await snapshot(pool))["projector_offsets"] == before["projector_offsets"]

    async with running(kafka, pool) as projector:
        await wait_until_async(
            instances_final, PROJECTION_TIMEOUT_S, message=f"instances reach {expected}"
        )
        await wait_caught_up(projector)
    [headers] = await dead_letters(kafka, bad_partition, bad_offset)
    assert b"magic" in headers["reason"]
    before = await snapshot(pool)

    await assert_rows(pool, sc)

    # Rebuild: empty every read model and the positions, project again from offset 0.
    async with pool.acquire() as conn:
        names = ", ".join([t.name for t in ALL_TABLES] + ["projector_offsets"])
        await conn.execute(f"TRUNCATE {names}")
    async with running(kafka, pool) as projector:
        await wait_until_async(
            same_positions, PROJECTION_TIMEOUT_S, message="the rebuild reaches the same positions"
        )
        await wait_caught_up(projector)
    after = await snapshot(pool)
    # Replayed from 0, the garbage is dead-lettered once more (one copy per pass), not twice.
    assert len(await dead_letters(kafka, bad_partition, bad_offset)) == 2
    for name in before:
        assert after[name] == before[name], f"{name} differs after a rebuild"

    # Re-delivered events change nothing.
    async with pool.acquire() as conn, conn.transaction():
        assert await apply_batch(conn, list(sc.events())) == 0
    assert await snapshot(pool) == before

    # A restarted projector resumes at its stored positions: it sees only the new event
    # (from offset 0 it would dead-letter the garbage again).
    again = sc.restarted
    new = again.do(ReportAttemptStarted(again.instance_id, "a", 2, "w4"))
    await produce(kafka, codec, new)

    async def new_event_applied() -> bool:
        statuses = await instance_statuses(pool, [again.instance_id])
        return statuses == {again.instance_id: f"IN_PROGRESS@{again.final.seq}"}

    async with running(kafka, pool) as projector:
        await wait_until_async(new_event_applied, PROJECTION_TIMEOUT_S, message="resumed")
        await wait_caught_up(projector)
    assert (projector.applied_events, projector.dead_lettered) == (1, 0)
    row = await pool.fetchrow(
        "SELECT status, worker_id FROM attempts WHERE instance_id = $1 AND attempt = 2",
        again.instance_id,
    )
    assert row is not None
    assert tuple(row) == ("RUNNING", "w4")
