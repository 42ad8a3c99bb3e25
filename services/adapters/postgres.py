"""PostgreSQL: the connection pool and the versioned schema migrations.

Migrations are the files ``projections/migrations/NNNN_name.sql``, applied in version order,
each once, each in its own transaction, and recorded in ``schema_migrations``. A session-level
advisory lock serialises concurrent processes (the projector and the API may both start at
once), so exactly one of them applies a given version.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.adapters.errors import AdapterError

log = logging.getLogger(__name__)

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


# Back-off while PostgreSQL is away: doubling from RETRY_BASE_S, capped at RETRY_CAP_S, so a
# restart of a few seconds is noticed within a second and an hour-long outage costs one
# connection attempt per few seconds per process.
RETRY_BASE_S = 0.2
RETRY_CAP_S = 5.0
_JITTER = random.Random()

# The server went away or is not accepting connections yet: waiting is the cure. Anything
# else (a constraint, a syntax error, a statement timeout) is a bug or bad data, not this.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable: the socket never got or lost its server
    TimeoutError,  # connect or pool acquire timed out
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08, e.g. closed mid-query
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.exceptions.AdminShutdownError,  # 57P01: terminated by a fast shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
)


def is_unavailable(err: BaseException) -> bool:
    """True when `err` (or what caused it) says PostgreSQL cannot be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UNAVAILABLE_ERRORS):
            return True
        # asyncpg's own "the connection is closed" (a query on a connection whose server
        # went away) is an InterfaceError, a class it shares with misuse; tell them apart
        # by its message, the only thing that distinguishes them.
        if isinstance(current, asyncpg.exceptions.InterfaceError) and "connection is closed" in (
            str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


# The database refuses what it was asked to hold, and will refuse it again whenever asked:
# SQLSTATE class 22 (a NUL character, an untranslatable one, a value out of range), class 23
# (a constraint), 54000 (a value too large for an index), and asyncpg's own refusal to encode
# an argument (its DataError, a ValueError: e.g. an int past int8). Anything else, the database
# away above all (`is_unavailable`), says nothing about the data.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,
    asyncpg.exceptions._base.DataError,
)


def is_poison(err: BaseException) -> bool:
    """True when `err` says the data itself cannot be written (see POISON_ERRORS), and not
    that PostgreSQL cannot be reached."""
    return isinstance(err, POISON_ERRORS) and not is_unavailable(err)


def retry_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): exponential, capped, with
    "equal jitter" so processes that lost the server together do not return in lockstep.
    Hand-written: three lines, where tenacity's waits need its retry-state object."""
    ceiling: float = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** min(attempt, 32))
    return ceiling / 2 + (rng or _JITTER).uniform(0, ceiling / 2)


class MigrationError(AdapterError, RuntimeError):
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


async def connect_pool_when_up(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    prepare: Callable[[asyncpg.Pool], Awaitable[object]] | None = None,
) -> asyncpg.Pool:
    """`connect_pool`, and `prepare(pool)` (e.g. the migrations), retried with `retry_delay`
    while PostgreSQL is unavailable (`is_unavailable`): a process started beside a database
    that is still booting or restarting waits for it instead of exiting. Other errors raise.
    The wait is logged once, as the start of an outage (services.adapters.logs)."""
    attempt = 0
    while True:
        pool: asyncpg.Pool | None = None
        try:
            pool = await connect_pool(url, min_size=min_size, max_size=max_size)
            if prepare is not None:
                await prepare(pool)
            return pool
        except Exception as err:
            if pool is not None:
                await pool.close()
            if not is_unavailable(err):
                raise
            if attempt == 0:
                log.warning(
                    "PostgreSQL is unavailable (%s: %s); waiting for it",
                    type(err).__name__,
                    err,
                    extra={"outage": "postgres"},
                )
        await asyncio.sleep(retry_delay(attempt))
        attempt += 1


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
