"""The working set a batch of events is projected into, and its one-round-trip-per-table I/O.

Handlers never touch the database: they read and change rows of a `Batch`, an in-memory
copy of exactly the rows the batch's events address (loaded up front, one query per table).
The changed rows are then written back with one set-based upsert per table. A batch of
thousands of events thus costs about a dozen round trips, whatever its size, and the result
is the same as applying the events one by one, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from services.domain.protocol.events import Event

Row = dict[str, Any]
Key = tuple[Any, ...]
Conn = Connection | PoolConnectionProxy
Handler = Callable[["Batch", Event, Any], None]
"""(batch, event, event.payload) -> None: applies one event to the batch's rows."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts(micros: int) -> datetime:
    """An event time (UTC microseconds) as a timestamptz value, exactly (no float rounding)."""
    return _EPOCH + timedelta(microseconds=micros)


def ts_or_none(micros: int | None) -> datetime | None:
    return None if micros is None else ts(micros)


def json_column(row: Row | None, column: str) -> Any:
    """A jsonb column's value: text as written in this batch, or decoded as loaded (None
    when the row or the value is missing)."""
    value = None if row is None else row[column]
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Table:
    """A read-model table: its columns with their PostgreSQL types, and its primary key.

    `keys_of`, when set, names the existing rows an event reads or changes; those rows are
    loaded before the batch is applied. Tables written without reading (inserts, rows whose
    new value does not depend on the old one) leave it unset.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    keys_of: Callable[[Event], Iterable[Key]] | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def key_of(self, row: Row) -> Key:
        return tuple(row[k] for k in self.key)

    def _types(self) -> dict[str, str]:
        return dict(self.columns)

    def load_sql(self) -> str:
        types = self._types()
        arrays = ", ".join(f"${i}::{types[k]}[]" for i, k in enumerate(self.key, 1))
        on = " AND ".join(f"t.{k} = k.{k}" for k in self.key)
        return (
            f"SELECT t.* FROM {self.name} AS t "
            f"JOIN unnest({arrays}) AS k({', '.join(self.key)}) ON {on}"
        )

    def _insert_sql(self) -> str:
        names = ", ".join(self.column_names)
        arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(self.columns, 1))
        return f"INSERT INTO {self.name} ({names}) SELECT * FROM unnest({arrays})"

    def upsert_sql(self) -> str:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.column_names if c not in self.key)
        return f"{self._insert_sql()} ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}"

    def insert_new_sql(self) -> str:
        """Inserts the rows not there yet; returns the keys of those it inserted."""
        return f"{self._insert_sql()} ON CONFLICT DO NOTHING RETURNING {', '.join(self.key)}"

    def arrays(self, rows: Iterable[Row]) -> list[list[Any]]:
        rows = list(rows)
        return [[r[c] for r in rows] for c in self.column_names]


class Batch:
    """The rows a batch of events reads and writes, keyed by table and primary key."""

    def __init__(self) -> None:
        self._rows: dict[Table, dict[Key, Row]] = {}
        self._dirty: dict[Table, set[Key]] = {}

    def loaded(self, table: Table, rows: Iterable[Row]) -> None:
        """Rows as they are in the database (not written back unless changed)."""
        held = self._rows.setdefault(table, {})
        for row in rows:
            held[table.key_of(row)] = row

    def get(self, table: Table, key: Key) -> Row | None:
        return self._rows.get(table, {}).get(key)

    def put(self, table: Table, row: Row) -> None:
        """Insert or replace a whole row."""
        if set(row) != set(table.column_names):
            raise ValueError(f"{table.name}: row has columns {sorted(row)}")
        key = table.key_of(row)
        self._rows.setdefault(table, {})[key] = row
        self._dirty.setdefault(table, set()).add(key)

    def update(self, table: Table, key: Key, **changes: Any) -> bool:
        """Change columns of an existing row; False (and no change) when there is none."""
        row = self.get(table, key)
        if row is None:
            return False
        unknown = set(changes) - set(table.column_names)
        if unknown:
            raise ValueError(f"{table.name}: no columns {sorted(unknown)}")
        row.update(changes)
        self._dirty.setdefault(table, set()).add(key)
        return True

    def changed(self) -> dict[Table, list[Row]]:
        """The rows to write, per table, in primary-key order (a stable lock order)."""
        return {
            table: [self._rows[table][k] for k in sorted(keys)]
            for table, keys in self._dirty.items()
            if keys
        }


async def load(conn: Conn, batch: Batch, tables: Iterable[Table], events: list[Event]) -> None:
    """Load into `batch` the existing rows that `events` address, one query per table."""
    for table in tables:
        if table.keys_of is None:
            continue
        keys = sorted({k for e in events for k in table.keys_of(e)})
        if not keys:
            continue
        columns = [list(col) for col in zip(*keys, strict=True)]
        records = await conn.fetch(table.load_sql(), *columns)
        batch.loaded(table, (dict(r) for r in records))


async def write(conn: Conn, batch: Batch) -> None:
    """Upsert every changed row, one statement per table."""
    for table, rows in batch.changed().items():
        await conn.execute(table.upsert_sql(), *table.arrays(rows))
