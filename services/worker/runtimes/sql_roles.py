"""What the role of a named sql connection may do beyond its tables: the boundary of sql steps.

A `read_only` sql step runs in a READ ONLY transaction, which stops it from writing rows; it
does not stop a superuser (or a member of `pg_read_server_files`, `pg_write_server_files`
or `pg_execute_server_program`) from reading the database host's files with
`pg_read_file(...)` or running a program there with `COPY … TO PROGRAM`: only the role's
privileges are a boundary. So the worker refuses a connection whose role is a superuser, or
may become one (`SET ROLE` to a superuser role it is a member of), unless the operator named
it in `BATON_SQL_ALLOW_SUPERUSER`, and it warns about the others. It checks every connection
once at start (and exits on a refusal, so a misconfigured worker never serves), and again
each time a step connects (a database that was down at start, a role changed since).
Messages name the connection and its role, never the DSN (it holds the password).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

# Membership (direct or through other roles) in a superuser role counts as superuser: such a
# member can `SET ROLE` to it in its statement.
_POWERS = """
SELECT current_user AS role,
       EXISTS (SELECT 1 FROM pg_roles r
               WHERE r.rolsuper AND pg_has_role(current_user, r.oid, 'MEMBER')) AS superuser,
       pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS read_files,
       pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') AS write_files,
       pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') AS run_programs
"""
CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RolePowers:
    """What a connection's role may do on the database host, beyond its tables."""

    role: str
    superuser: bool
    read_files: bool
    write_files: bool
    run_programs: bool

    @property
    def host_powers(self) -> list[str]:
        """The powers over the database host, in words (empty: none)."""
        if self.superuser:
            return ["is a superuser (reads and writes the host's files, runs programs there)"]
        powers = []
        if self.read_files:
            powers.append("reads the host's files (pg_read_server_files)")
        if self.write_files:
            powers.append("writes the host's files (pg_write_server_files)")
        if self.run_programs:
            powers.append("runs programs on the host (pg_execute_server_program)")
        return powers


async def read_powers(conn: asyncpg.Connection) -> RolePowers:
    row = await conn.fetchrow(_POWERS)
    assert row is not None
    return RolePowers(
        role=row["role"],
        superuser=row["superuser"],
        read_files=row["read_files"],
        write_files=row["write_files"],
        run_programs=row["run_programs"],
    )


# user:password@ in a DSN that urlsplit cannot read (it is then refused, but its message
# must still not carry the password).
_USERINFO_PASSWORD = re.compile(r"://[^:/@]*:([^@]*)@")


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN's password masked, as written and as decoded. asyncpg's messages
    do not hold it today; the next version's, or a server's, must not carry it to a step's
    failure (kept for ever in baton.events) or to the log."""
    secrets: set[str] = set()
    try:
        parts = urlsplit(dsn)
        if parts.password:
            secrets.add(parts.password)
        secrets.update(parse_qs(parts.query).get("password", []))
    except ValueError:
        pass
    secrets.update(_USERINFO_PASSWORD.findall(dsn))
    for secret in list(secrets):
        secrets.add(unquote(secret))
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def allowed_superusers(value: str | None) -> frozenset[str]:
    """`BATON_SQL_ALLOW_SUPERUSER`: the connection names, comma-separated."""
    return frozenset(n.strip() for n in (value or "").split(",") if n.strip())


def refusal(name: str, powers: RolePowers) -> str:
    return (
        f"sql connection {name!r} connects as role {powers.role!r}, which is a superuser or"
        " may become one: a read_only step is no boundary for it (pg_read_file, COPY … TO"
        " PROGRAM); use a role without superuser, or name the connection in"
        " BATON_SQL_ALLOW_SUPERUSER"
    )


async def check_connections(
    connections: Mapping[str, str], allow_superuser: frozenset[str], log: logging.Logger
) -> list[str]:
    """Check each named connection's role once; returns the refusals (empty: all usable).

    A superuser role not allowed is refused; other powers over the database host, and an
    allowed superuser, are logged as warnings; a connection that cannot be reached now is
    logged and left to the check its steps make when they connect. A DSN that is not one
    is refused: it would fail every step.
    """
    refused: list[str] = []
    unknown = sorted(allow_superuser - set(connections))
    if unknown:
        log.warning("BATON_SQL_ALLOW_SUPERUSER names no such sql connection: %s", unknown)
    for name in sorted(connections):
        try:
            conn = await asyncpg.connect(connections[name], timeout=CHECK_TIMEOUT_S)
        except (ValueError, asyncpg.ClientConfigurationError) as err:
            reason = redact(str(err), connections[name])
            refused.append(f"sql connection {name!r} has an invalid DSN: {reason}")
            continue
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning(
                "sql connection %r cannot be checked now (%s: %s); its steps check its role"
                " when they connect",
                name,
                type(err).__name__,
                redact(str(err), connections[name]),
            )
            continue
        try:
            powers = await read_powers(conn)
        finally:
            await conn.close()
        if powers.superuser and name not in allow_superuser:
            refused.append(refusal(name, powers))
        elif powers.host_powers:
            log.warning(
                "sql connection %r connects as role %r, which %s: its sql steps can do so,"
                " read_only or not%s",
                name,
                powers.role,
                "; ".join(powers.host_powers),
                " (allowed by BATON_SQL_ALLOW_SUPERUSER)" if powers.superuser else "",
            )
    return refused
