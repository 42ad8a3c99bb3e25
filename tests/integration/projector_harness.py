"""Plumbing for the projector integration test: its own events topic, an in-process projector,
producing events (and garbage) to it, reading dead letters back, and snapshots of the read
models.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from projections import ALL_TABLES
from services.adapters.avro import Codec
from services.adapters.kafka import TOPIC_DEADLETTER, new_consumer, new_producer
from services.adapters.postgres import apply_migrations, connect_pool
from services.domain.protocol.events import Event
from services.projector.consumer import PROJECTOR_NAME, Projector
from tests.helpers import own_database, wait_until_async

PROJECTION_TIMEOUT_S = 60.0


def suffix() -> str:
    return uuid.uuid4().hex[:10]


# Its own events topic: the garbage this test writes must not reach baton.events, which
# the engines of later tests fold (and refuse to fold past an undecodable event).
EVENTS = "itest.projector.events"


async def create_topic(kafka: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, partitions, 1)])
        await wait_until_async(lambda: _has_leaders(admin, name), timeout=30)
    finally:
        await admin.close()


async def _has_leaders(admin: AIOKafkaAdminClient, name: str) -> bool:
    (topic,) = await admin.describe_topics([name])
    parts = topic.get("partitions") or []
    return bool(parts) and all(p.get("leader", -1) >= 0 for p in parts)


@asynccontextmanager
async def running(kafka: str, pool: asyncpg.Pool) -> AsyncIterator[Projector]:
    projector = Projector(kafka, pool, Codec(), group_id=f"test-projector-{suffix()}", topic=EVENTS)
    task = asyncio.create_task(projector.run())
    try:
        yield projector
    finally:
        projector.stop()
        await asyncio.wait_for(task, 30)


async def wait_caught_up(projector: Projector) -> None:
    await wait_until_async(
        projector.caught_up, PROJECTION_TIMEOUT_S, message="projector reaches the end of the log"
    )


async def produce(kafka: str, codec: Codec, events: list[Event]) -> None:
    producer = new_producer(kafka)
    await producer.start()
    try:
        sent = [
            await producer.send(EVENTS, codec.encode_event(e), key=e.key.encode()) for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def produce_garbage(kafka: str, key: str, value: bytes = b"garbage") -> tuple[int, int]:
    """`value` as one record keyed by `key`; returns its partition and offset."""
    producer = new_producer(kafka)
    await producer.start()
    try:
        meta = await producer.send_and_wait(EVENTS, value, key=key.encode())
        return meta.partition, meta.offset
    finally:
        await producer.stop()


async def dead_letters(
    kafka: str, partition: int, offset: int, value: bytes = b"garbage"
) -> list[dict[str, bytes]]:
    """The headers of every dead-lettered copy of events[partition]@offset (whose value must
    be `value`), read to the end."""
    consumer = new_consumer(kafka, None)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC_DEADLETTER, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found = []
        async with asyncio.timeout(PROJECTION_TIMEOUT_S):
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    headers = {k: v for k, v in record.headers}
                    if (
                        headers.get("source_topic") == EVENTS.encode()
                        and headers.get("source_partition") == str(partition).encode()
                        and headers.get("source_offset") == str(offset).encode()
                    ):
                        assert record.value == value
                        found.append(headers)
        return found
    finally:
        await consumer.stop()


Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot(pool: asyncpg.Pool) -> Snapshot:
    out: Snapshot = {}
    async with pool.acquire() as conn:
        for table in ALL_TABLES:
            order = ", ".join(table.key)
            rows = await conn.fetch(f"SELECT * FROM {table.name} ORDER BY {order}")
            out[table.name] = [tuple(r) for r in rows]
        out["projector_offsets"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT * FROM projector_offsets WHERE projector = $1 ORDER BY topic, partition",
                PROJECTOR_NAME,
            )
        ]
    return out


async def instance_statuses(pool: asyncpg.Pool, ids: list[str]) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT instance_id, status, last_seq FROM instances WHERE instance_id = ANY($1)", ids
    )
    return {r["instance_id"]: f"{r['status']}@{r['last_seq']}" for r in rows}


@asynccontextmanager
async def migrated_pool(postgres: str, prefix: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh database of its own (`<prefix>_<suffix>`), migrated: a projector
    test's read models start empty, whatever other tests wrote."""
    url = await asyncio.to_thread(own_database, postgres, f"{prefix}_{suffix()}")
    pool = await connect_pool(url)
    try:
        await apply_migrations(pool)
        yield pool
    finally:
        await pool.close()
