"""Fixtures shared by the integration test modules of this package."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.avro import Codec
from services.adapters.cluster import ClusterProbe
from services.adapters.kafka import ensure_topics, new_producer
from services.adapters.postgres import apply_migrations, connect_pool
from services.adapters.schema_registry import register_schemas
from services.adapters.settings import Settings
from services.api.app import create_app
from services.api.deps import ApiDeps
from tests.helpers import own_database
from tests.integration.api_harness import Api
from tests.integration.engine_harness import prepare_topics


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer, Baton's topics made (a module may override it: more queues)."""
    await prepare_topics(kafka)
    p = new_producer(kafka)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(scope="module")
async def api(kafka: str, postgres: str, settings: Settings) -> AsyncIterator[Api]:
    # Its own database: these tests write read-model rows directly.
    url = await asyncio.to_thread(own_database, postgres, "baton_api_test")
    await ensure_topics(kafka, settings.partitions)
    pool = await connect_pool(url)
    producer = new_producer(kafka)
    cluster = ClusterProbe(kafka)
    codec = Codec()
    try:
        await apply_migrations(pool)
        await register_schemas(pool, codec)
        await producer.start()
        await cluster.start()
        app = create_app(ApiDeps(pool=pool, producer=producer, codec=codec, cluster=cluster))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            yield Api(http, pool, codec, kafka)
    finally:
        await cluster.close()
        await producer.stop()
        await pool.close()
