"""Liveness and readiness: the database answers and the Kafka producer is running."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from services.api import problems
from services.api.deps import Pool, Producer
from services.api.dto import Health
from services.api.problems import Problem

DB_TIMEOUT_S = 2.0

router = APIRouter(tags=["health"])


def producer_running(producer: Any) -> bool:
    # aiokafka has no public "is started" flag; its sender task exists only between
    # start() and stop(), and dies if the producer fails fatally.
    if getattr(producer, "_closed", True):
        return False
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return task is not None and not task.done()


@router.get("/health", responses=problems.responses(503), summary="Health of the API")
async def health(pool: Pool, producer: Producer) -> Health:
    faults: list[tuple[str, str]] = []
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), DB_TIMEOUT_S)
    except Exception as err:  # any failure means "not healthy", and says why
        faults.append(("database", f"{type(err).__name__}: {err}"))
    if not producer_running(producer):
        faults.append(("producer", "the Kafka producer is not running"))
    if faults:
        raise Problem(
            503,
            "Service Unavailable",
            "; ".join(f"{p}: {m}" for p, m in faults),
            kind="unhealthy",
            errors=faults,
        )
    return Health()
