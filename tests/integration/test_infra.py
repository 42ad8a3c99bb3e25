"""The real Kafka and PostgreSQL the session starts: transactions and migrations work."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.adapters.postgres import Migration, apply_migrations, connect_pool, load_migrations
from tests.helpers import own_database

pytestmark = pytest.mark.integration


async def test_read_committed_consumer_sees_only_committed_transactions(kafka: str) -> None:
    topic = f"test.infra.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka, transactional_id=f"test-infra-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"first", key=b"k")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"k")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"second", key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while len(values) < 2:
                batch = await consumer.getmany(partition, timeout_ms=1000)
                values += [record.value for record in batch.get(partition, [])]
    finally:
        await consumer.stop()
    assert values == [b"first", b"second"]


async def test_apply_migrations_records_each_file_once(postgres: str) -> None:
    pool = await connect_pool(postgres)
    try:
        await apply_migrations(pool)
        again = await apply_migrations(pool)
        rows = await pool.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    finally:
        await pool.close()
    assert again == []
    assert [(r["version"], r["name"]) for r in rows] == [
        (m.version, m.name) for m in load_migrations()
    ]


async def test_concurrent_apply_migrations_applies_each_version_once(postgres: str) -> None:
    url = own_database(postgres, "baton_migration_race")
    # Not idempotent on purpose: applying either twice fails.
    migrations = [
        Migration(1, "create_things", "CREATE TABLE things (id int PRIMARY KEY)"),
        Migration(2, "seed_things", "INSERT INTO things VALUES (1), (2)"),
    ]
    pool = await connect_pool(url, min_size=4, max_size=4)
    try:
        results = await asyncio.gather(*(apply_migrations(pool, migrations) for _ in range(4)))
        count = await pool.fetchval("SELECT count(*) FROM things")
        versions = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await pool.close()
    assert sorted(m.version for applied in results for m in applied) == [1, 2]
    assert count == 2
    assert [r["version"] for r in versions] == [1, 2]
