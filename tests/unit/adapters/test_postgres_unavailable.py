"""Which errors mean "PostgreSQL is away, wait" and how long to wait: pure rules."""

from __future__ import annotations

import random

import asyncpg
import pytest

from services.adapters.postgres import RETRY_BASE_S, RETRY_CAP_S, is_unavailable, retry_delay


@pytest.mark.parametrize(
    "err",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    ],
)
def test_the_server_being_away_is_unavailable(err: BaseException) -> None:
    assert is_unavailable(err)


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: another one is in progress"),
        ValueError("a bug"),
        KeyError("a bug"),
    ],
)
def test_bugs_and_bad_data_are_not(err: BaseException) -> None:
    assert not is_unavailable(err)


def test_a_wrapped_cause_counts() -> None:
    outer = RuntimeError("apply failed")
    outer.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert is_unavailable(outer)


def test_retry_delay_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    rng = random.Random(1)
    for attempt in range(40):
        ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt)
        for _ in range(20):
            delay = retry_delay(attempt, rng)
            assert ceiling / 2 <= delay <= ceiling
    assert retry_delay(10_000, rng) <= RETRY_CAP_S
