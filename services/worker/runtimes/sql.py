"""The `sql` step: one statement on a PostgreSQL connection the worker knows by name.

Connections are configured on the worker, never in definitions: `BATON_SQL_CONNECTIONS` is a
JSON object of name -> DSN. `args` are bound as $1, $2 … by the server (never spliced into
the text). The statement runs in a READ ONLY transaction unless the step says
`read_only: false`, under a statement timeout (the step's timeout, else 60 s). At most
`max_rows` rows are fetched, and the outputs stay within a step's output limit. READ ONLY
keeps a step from writing rows; it is no security boundary: the connection's role is
(sql_roles.py), so a superuser role is refused unless `BATON_SQL_ALLOW_SUPERUSER` names it.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import FailureKind
from services.domain.language.evaluation import fill_templates
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepOutcome, StepSuccess, failure
from services.worker.runtimes.sql_roles import read_powers, redact, refusal

DEFAULT_TIMEOUT_S = 60.0
# The rows kept in outputs, as JSON: a step's outputs may be at most 256 KiB.
MAX_ROWS_BYTES = 200 * 1024


def connections_from_env(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    parsed = json.loads(value)
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise ValueError("BATON_SQL_CONNECTIONS must be a JSON object of name -> DSN")
    return parsed


class SqlRuntime:
    """Runs sql steps on the named connections. A connection whose role is a superuser (or
    may become one) is refused unless its name is in ``allow_superuser``: its steps fail as
    PLATFORM failures without running (sql_roles.py says why)."""

    def __init__(
        self, connections: Mapping[str, str], allow_superuser: frozenset[str] = frozenset()
    ) -> None:
        self.connections = dict(connections)
        self.allow_superuser = allow_superuser

    async def run(self, task: Task) -> StepOutcome:
        config = json.loads(task.config)
        name = config["connection"]
        dsn = self.connections.get(name)
        if dsn is None:
            known = ", ".join(sorted(self.connections)) or "none"
            return failure(
                FailureKind.USER,
                f"no sql connection {name!r} on this worker (BATON_SQL_CONNECTIONS has {known})",
            )
        try:
            args = fill_templates(config["args"], json.loads(task.params))
        except ExpressionError as err:
            return failure(FailureKind.USER, f"sql step: {err}")
        timeout = task.timeout_seconds or DEFAULT_TIMEOUT_S
        limit = int(config["max_rows"])
        try:
            conn = await asyncpg.connect(dsn, timeout=min(timeout, 30.0))
        except (ValueError, asyncpg.ClientConfigurationError) as err:
            # The worker's configuration, not the step's fault; named, never shown.
            reason = redact(str(err), dsn)
            return failure(
                FailureKind.PLATFORM, f"sql connection {name!r} has an invalid DSN: {reason}"
            )
        except (OSError, asyncpg.PostgresError) as err:
            reason = redact(str(err), dsn)
            return failure(FailureKind.USER, f"cannot connect to {name!r}: {reason}")
        try:
            if name not in self.allow_superuser:
                powers = await read_powers(conn)
                if powers.superuser:
                    return failure(FailureKind.PLATFORM, refusal(name, powers))
            await conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            async with conn.transaction(readonly=bool(config["read_only"])):
                cursor = conn.cursor(config["statement"], *args)
                rows = [dict(r) async for r in _first(cursor, limit + 1)]
        except asyncpg.QueryCanceledError:
            return failure(FailureKind.TIMEOUT, f"the statement ran longer than {timeout:g}s")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, TypeError) as err:
            return failure(FailureKind.USER, f"{type(err).__name__}: {redact(str(err), dsn)}")
        finally:
            await conn.close()
        truncated = len(rows) > limit
        rows = rows[:limit]
        encoded = json.dumps(rows, default=_jsonable, separators=(",", ":"))
        if len(encoded.encode()) > MAX_ROWS_BYTES:
            return failure(
                FailureKind.USER,
                f"{len(rows)} rows are over {MAX_ROWS_BYTES} bytes as JSON; select fewer"
                " columns or rows (max_rows)",
            )
        return StepSuccess(
            {"rows": json.loads(encoded), "row_count": len(rows), "truncated": truncated}
        )


async def _first(cursor: Any, n: int) -> Any:
    count = 0
    async for row in cursor:
        if count >= n:
            return
        count += 1
        yield row


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)
