"""Test helpers. Tests wait for conditions with these, never with bare sleeps."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> None:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(predicate, timeout, message))
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> None:
    """As ``wait_until``, in a coroutine; ``predicate`` may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(predicate, timeout, message))
        await asyncio.sleep(interval)


def _failure(predicate: Callable[..., object], timeout: float, message: str | None) -> str:
    what = message or getattr(predicate, "__qualname__", repr(predicate))
    return f"condition not met within {timeout:g}s: {what}"


def own_database(base_url: str, name: str) -> str:
    """A fresh, empty database `name` on the server of `base_url`, for a test whose rows must
    not reach the session database that the running stack's projector owns (rows there must
    always be a pure function of the event log)."""
    from urllib.parse import urlsplit, urlunsplit

    from services.adapters.embedded_pg import recreate_database

    url = urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))
    recreate_database(url)
    return url


async def login_role(base_url: str, role: str, password: str, *member_of: str) -> str:
    """The URL of `base_url`'s database as a LOGIN role without superuser, created (or
    reset: roles outlive a test session's database) and made a member of `member_of` only.
    The test server trusts local connections, so the password is carried, never checked."""
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    conn = await asyncpg.connect(base_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if not exists:
            await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'ALTER ROLE "{role}" LOGIN NOSUPERUSER')
        held = await conn.fetch(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1",
            role,
        )
        for row in held:
            await conn.execute(f'REVOKE "{row["rolname"]}" FROM "{role}"')
        for group in member_of:
            await conn.execute(f'GRANT "{group}" TO "{role}"')
    finally:
        await conn.close()
    parts = urlsplit(base_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))
