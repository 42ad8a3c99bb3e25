"""The schema registry table: Baton's Avro schemas, stored for the registry read endpoints.

Registration is idempotent (every process may register at start-up); reads serve the
Confluent registry API (subjects, versions, schema by id) from the same rows.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.adapters.avro import Codec
from services.adapters.errors import AdapterError


class SchemaCollisionError(AdapterError, RuntimeError):
    """A schema id or (subject, version) is already stored with a different schema."""


async def register_schemas(pool: asyncpg.Pool, codec: Codec) -> int:
    """Store every schema version the codec knows; return how many rows were new.

    Idempotent: rows already stored identically are left alone. A stored row that disagrees
    (same id or same subject and version, different schema) raises ``SchemaCollisionError``
    and nothing is written.
    """
    entries = codec.schemas()
    async with pool.acquire() as conn, conn.transaction():
        inserted = 0
        for entry in entries:
            status = await conn.execute(
                "INSERT INTO schema_registry (id, subject, version, schema) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                entry.id,
                entry.subject,
                entry.version,
                entry.schema_json,
            )
            if status == "INSERT 0 1":
                inserted += 1
                continue
            rows = await conn.fetch(
                "SELECT id, subject, version, schema FROM schema_registry "
                "WHERE id = $1 OR (subject = $2 AND version = $3)",
                entry.id,
                entry.subject,
                entry.version,
            )
            for row in rows:
                if (row["id"], row["subject"], row["version"], row["schema"]) != (
                    entry.id,
                    entry.subject,
                    entry.version,
                    entry.schema_json,
                ):
                    raise SchemaCollisionError(
                        f"schema id {entry.id} ({entry.subject} v{entry.version}) collides "
                        f"with the stored schema id {row['id']} "
                        f"({row['subject']} v{row['version']}) whose text differs"
                    )
    return inserted


async def list_subjects(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT DISTINCT subject FROM schema_registry ORDER BY subject")
    return [row["subject"] for row in rows]


async def subject_versions(pool: asyncpg.Pool, subject: str) -> list[int]:
    """The versions of ``subject`` in ascending order; empty for an unknown subject."""
    rows = await pool.fetch(
        "SELECT version FROM schema_registry WHERE subject = $1 ORDER BY version", subject
    )
    return [row["version"] for row in rows]


async def schema_by_id(pool: asyncpg.Pool, id: int) -> str | None:
    value: str | None = await pool.fetchval("SELECT schema FROM schema_registry WHERE id = $1", id)
    return value


async def subject_version(pool: asyncpg.Pool, subject: str, version: int) -> dict[str, Any] | None:
    """The registry's ``/subjects/{subject}/versions/{version}`` body, or None if unknown."""
    row = await pool.fetchrow(
        "SELECT id, subject, version, schema FROM schema_registry "
        "WHERE subject = $1 AND version = $2",
        subject,
        version,
    )
    if row is None:
        return None
    return {
        "subject": row["subject"],
        "version": row["version"],
        "id": row["id"],
        "schema": row["schema"],
    }


async def latest_version(pool: asyncpg.Pool, subject: str) -> int | None:
    """The highest version of ``subject`` (the registry's ``versions/latest``)."""
    value: int | None = await pool.fetchval(
        "SELECT max(version) FROM schema_registry WHERE subject = $1", subject
    )
    return value
