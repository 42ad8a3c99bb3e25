"""PostgreSQL: the connection pool and the versioned schema migrations.

Migrations are the files ``projections/migrations/NNNN_name.sql``, applied in version order,
each once, each in its own transaction, and recorded in ``schema_migrations``. A session-level
advisory lock serialises concurrent processes (the projector and the API may both start at
once), so exactly one of them applies a given version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Any fixed 64-bit key works; this one is "baton.mi" in ASCII.
MIGRATION_LOCK_KEY = 0x626174_6F6E2E6D69
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migration files and the database disagree, or a file is malformed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


async def connect_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool on ``url``; the caller closes it."""
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
    if pool is None:  # only with a pool that was never initialised; keeps the type honest
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


def migrations_dir() -> Traversable:
    return resources.files("projections").joinpath("migrations")


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """All migration files in version order; a stray or duplicate file is an error."""
    directory = migrations_dir() if directory is None else directory
    if not directory.is_dir():
        return []
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"two migrations with version {version}: "
                f"{found[version].name!r} and {match['name']!r}"
            )
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(
    target: asyncpg.Pool | asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the migrations not yet recorded; return the ones applied by this call."""
    pending = load_migrations() if migrations is None else migrations
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _apply(conn, pending)
    return await _apply(target, pending)


async def _apply(
    conn: asyncpg.Connection | PoolConnectionProxy, migrations: list[Migration]
) -> list[Migration]:
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, name FROM schema_migrations")
        done: dict[int, str] = {row["version"]: row["name"] for row in rows}
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.name:
                    raise MigrationError(
                        f"migration {migration.version} was applied as "
                        f"{done[migration.version]!r} but the file is now {migration.name!r}"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied
