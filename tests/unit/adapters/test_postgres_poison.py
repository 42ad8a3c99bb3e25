"""Which database errors say "this event cannot be projected" (dead-letter it, go on) and
which say "the database is away" (wait, retry) or neither (a bug: raise)."""

from __future__ import annotations

import asyncpg
import pytest

from services.adapters.postgres import is_poison, is_unavailable


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),
        asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type json"),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.NotNullViolationError("null value"),
        asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds maximum"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
    ],
)
def test_what_the_data_cannot_be_is_poison(err: BaseException) -> None:
    assert is_poison(err)
    assert not is_unavailable(err)


@pytest.mark.parametrize(
    "err",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),  # a bug, not data
        asyncpg.exceptions.InternalClientError("another operation is in progress"),
        KeyError("x"),
    ],
)
def test_an_outage_or_a_bug_is_no_poison(err: BaseException) -> None:
    assert not is_poison(err)
