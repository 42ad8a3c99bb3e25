"""The schema registry table on a real PostgreSQL: idempotent registration and the reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.adapters.avro import SUBJECTS, Codec
from services.adapters.postgres import apply_migrations, connect_pool
from services.adapters.schema_registry import (
    SchemaCollisionError,
    latest_version,
    list_subjects,
    register_schemas,
    schema_by_id,
    subject_version,
    subject_versions,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_pool(postgres)
    try:
        await apply_migrations(pool)
        await pool.execute("TRUNCATE schema_registry")
        yield pool
        # Leave the table as a fresh database has it: a later test registers what it needs.
        await pool.execute("TRUNCATE schema_registry")
    finally:
        await pool.close()


async def test_registration_is_idempotent(pool: asyncpg.Pool) -> None:
    codec = Codec()
    assert await register_schemas(pool, codec) == len(codec.schemas())
    assert await register_schemas(pool, codec) == 0
    assert await pool.fetchval("SELECT count(*) FROM schema_registry") == len(codec.schemas())


async def test_reads_serve_every_schema_the_codec_knows(pool: asyncpg.Pool) -> None:
    codec = Codec()
    await register_schemas(pool, codec)
    assert await list_subjects(pool) == sorted(SUBJECTS.values())
    for entry in codec.schemas():
        assert await schema_by_id(pool, entry.id) == entry.schema_json
        assert entry.version in await subject_versions(pool, entry.subject)
        body = await subject_version(pool, entry.subject, entry.version)
        assert body == {
            "subject": entry.subject,
            "version": entry.version,
            "id": entry.id,
            "schema": entry.schema_json,
        }
        assert json.loads(entry.schema_json)["type"] == "record"
    for record, subject in SUBJECTS.items():
        assert await latest_version(pool, subject) == codec.current_schema(record).version


async def test_unknown_lookups_are_empty(pool: asyncpg.Pool) -> None:
    await register_schemas(pool, Codec())
    assert await schema_by_id(pool, 1) is None
    assert await subject_versions(pool, "nope-value") == []
    assert await subject_version(pool, "baton.events-value", 999) is None
    assert await latest_version(pool, "nope-value") is None


async def test_an_id_stored_with_another_schema_is_a_collision(pool: asyncpg.Pool) -> None:
    codec = Codec()
    entry = codec.schemas()[0]
    await pool.execute(
        "INSERT INTO schema_registry (id, subject, version, schema) VALUES ($1, $2, $3, $4)",
        entry.id,
        entry.subject,
        entry.version,
        '{"type": "string"}',
    )
    with pytest.raises(SchemaCollisionError, match=str(entry.id)):
        await register_schemas(pool, codec)
    # Nothing else was written: registration is all or nothing.
    assert await pool.fetchval("SELECT count(*) FROM schema_registry") == 1
