"""A poison event: one that decodes but that PostgreSQL refuses to hold (here a NUL character
in a payload string: text and jsonb cannot hold U+0000). DESIGN §3.5: it goes to the
dead-letter topic with the reason, and the projector keeps going — the events after it are
projected, and a rebuild from offset 0 does exactly the same (issue 14, poison events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from projections import ALL_TABLES
from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics
from services.adapters.settings import Settings
from services.domain.protocol.events import InstanceStarted
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
    suffix,
    wait_caught_up,
)
from tests.integration.projector_scenario import T0, build_scenario, diamond, start

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(postgres, "baton_poison") as pool:
        yield pool


async def test_a_poison_event_is_dead_lettered_and_the_projector_keeps_going(
    kafka: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    await ensure_topics(kafka, settings.partitions)
    await create_topic(kafka, EVENTS, settings.partitions)
    codec = Codec()
    sc = build_scenario()
    expected = {r.instance_id: f"{r.final.status.value}@{r.final.seq}" for r in sc.runs}

    # An instance whose start carries a NUL in its initiator: it decodes, and PostgreSQL
    # refuses it. Keyed like one of the scenario's instances, so that the events after it in
    # its partition (and in the same fetched batch) must still be projected.
    bad = start(f"poison-{suffix()}", "wf-poison", diamond("wf-poison", "poison"), T0)
    first = bad.events[0]
    assert isinstance(first.payload, InstanceStarted)
    poison = replace(first, payload=replace(first.payload, initiator="api:a\x00b"))
    value = codec.encode_event(poison)
    bad_partition, bad_offset = await produce_garbage(kafka, sc.succeeded.instance_id, value)
    await produce(kafka, codec, list(sc.events()))

    async def instances_final() -> bool:
        return await instance_statuses(pool, list(expected)) == expected

    async with running(kafka, pool) as projector:
        await wait_until_async(
            instances_final, PROJECTION_TIMEOUT_S, message=f"instances reach {expected}"
        )
        await wait_caught_up(projector)
    # The topic is shared with test_projector.py, whose garbage record is dead-lettered too:
    # exactly one dead letter names the poison event's position.
    [headers] = await dead_letters(kafka, bad_partition, bad_offset, value)
    reason = headers["reason"].decode()
    assert poison.event_id in reason
    assert "UntranslatableCharacterError" in reason or "CharacterNotInRepertoire" in reason
    assert await instance_statuses(pool, [bad.instance_id]) == {}
    before = await snapshot(pool)

    # Rebuild from offset 0: the same rows, the same positions, the poison dead-lettered again
    # (one copy per pass).
    async with pool.acquire() as conn:
        names = ", ".join([t.name for t in ALL_TABLES] + ["projector_offsets"])
        await conn.execute(f"TRUNCATE {names}")

    async def same_positions() -> bool:
        return (await snapshot(pool))["projector_offsets"] == before["projector_offsets"]

    async with running(kafka, pool) as projector:
        await wait_until_async(
            same_positions, PROJECTION_TIMEOUT_S, message="the rebuild reaches the same positions"
        )
        await wait_caught_up(projector)
    assert len(await dead_letters(kafka, bad_partition, bad_offset, value)) == 2
    after = await snapshot(pool)
    for name in before:
        assert after[name] == before[name], f"{name} differs after a rebuild"
