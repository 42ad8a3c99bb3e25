"""The engine's asyncio exception handler drops only what a fenced producer leaves behind."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaConnectionError, ProducerFenced

from services.engine.fencing import quiet_fenced_leftovers


def reports_after(contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    loop = asyncio.new_event_loop()
    try:
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        quiet_fenced_leftovers(loop)
        for context in contexts:
            loop.call_exception_handler(context)
        return seen
    finally:
        loop.close()


def unretrieved(future: asyncio.Future[Any], exc: BaseException) -> dict[str, Any]:
    return {"message": "Future exception was never retrieved", "exception": exc, "future": future}


def test_a_fenced_producers_future_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert reports_after([unretrieved(loop.create_future(), ProducerFenced())]) == []
    finally:
        loop.close()


def test_every_other_report_still_reaches_the_previous_handler() -> None:
    loop = asyncio.new_event_loop()

    async def noop() -> None:
        return None

    task = loop.create_task(noop())
    try:
        others = [
            unretrieved(loop.create_future(), KafkaConnectionError()),  # not a fencing
            unretrieved(task, ProducerFenced()),  # a task of ours failing unobserved is a bug
            {"message": "something else entirely", "exception": ValueError("x")},
        ]
        assert reports_after(others) == others
    finally:
        loop.run_until_complete(task)
        loop.close()
