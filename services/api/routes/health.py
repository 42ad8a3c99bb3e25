"""Health: what the API can see of the whole stack, each check bounded in time.

Observed: PostgreSQL answers (and holds the projector's stored positions); the API's Kafka
producer runs; the cluster answers with its consumer groups and the events topic's ends.
Judged (`assess`, pure): each process kind is live when its consumer group has a member
(`services.adapters.cluster` says why groups); the projection's lag is, per events partition,
the topic's end minus the position the projector stored with its rows. 200 with the report
when nothing is wrong; otherwise 503 problem+json `unhealthy`, one error per fault (its path
in the report) and the whole report as `health`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from services.adapters.cluster import (
    ENGINE_GROUP,
    PROJECTOR_GROUP,
    ClusterProbe,
    GroupMembers,
    worker_queue,
)
from services.adapters.kafka import TOPIC_EVENTS
from services.api import problems
from services.api.deps import Cluster, Pool, Producer
from services.api.dto import Health, ProcessHealth, ProjectionHealth
from services.api.problems import Problem

DB_TIMEOUT_S = 2.0
# Events not yet projected beyond which reads are too stale to call the stack healthy: about
# five seconds of the engine's sustained rate on the benchmark machine.
MAX_LAG = 10_000
# The projector's name in projector_offsets (services.projector.consumer.PROJECTOR_NAME; the
# API may not import the projector, tests/unit pins that they agree).
PROJECTOR_NAME = "read_models"
MAX_MESSAGE = 200

router = APIRouter(tags=["health"])

_STORED = """
SELECT partition, next_offset FROM projector_offsets WHERE projector = $1 AND topic = $2
"""


@dataclass(frozen=True, slots=True)
class Observed:
    """What the checks saw; None where a check could not see (its error says why)."""

    database_error: str | None
    stored: dict[int, int] | None
    producer_running: bool
    kafka_error: str | None
    groups: dict[str, GroupMembers] | None
    ends: dict[int, int] | None
    # Kafka failed to take the API's last command (services/api/publishing.py).
    publishing_failed: bool = False


def assess(seen: Observed, max_lag: int = MAX_LAG) -> tuple[Health, list[tuple[str, str]]]:
    """The report and its faults (path in the report, message); no faults means healthy."""
    faults: list[tuple[str, str]] = []
    if seen.database_error is not None:
        faults.append(("database", seen.database_error))
    if seen.kafka_error is not None:
        faults.append(("kafka", seen.kafka_error))
    if not seen.producer_running:
        faults.append(("producer", "the API's Kafka producer is not running"))
    elif seen.publishing_failed:
        faults.append(
            (
                "producer",
                "Kafka did not take the API's last command; commands answer 503 until one is"
                " acknowledged",
            )
        )

    groups = seen.groups or {}
    queues = {q: g.members for name, g in groups.items() if (q := worker_queue(name)) is not None}
    members = {
        "engine": groups[ENGINE_GROUP].members if ENGINE_GROUP in groups else 0,
        "worker": sum(queues.values()),
        "projector": groups[PROJECTOR_GROUP].members if PROJECTOR_GROUP in groups else 0,
    }
    processes = {k: ProcessHealth(live=n > 0, members=n) for k, n in members.items()}
    if seen.groups is not None:  # otherwise the kafka fault says it all
        for kind, n in members.items():
            if n == 0:
                where = "any worker group" if kind == "worker" else f"group {_group(kind)}"
                faults.append((f"processes.{kind}", f"no live {kind}: no member in {where}"))

    partitions: dict[str, int] = {}
    lag: int | None = None
    if seen.ends is not None and seen.stored is not None:
        stored = seen.stored
        partitions = {
            str(p): max(0, end - stored.get(p, 0)) for p, end in sorted(seen.ends.items())
        }
        lag = sum(partitions.values())
        if lag > max_lag:
            faults.append(
                ("projection.lag", f"{lag} events not yet projected (more than {max_lag})")
            )

    report = Health(
        status="degraded" if faults else "ok",
        database="unavailable" if seen.database_error is not None else "ok",
        kafka="unavailable" if seen.kafka_error is not None else "ok",
        producer="stopped"
        if not seen.producer_running
        else "unavailable"
        if seen.publishing_failed
        else "ok",
        processes=processes,
        queues=dict(sorted(queues.items())),
        projection=ProjectionHealth(lag=lag, partitions=partitions, max_lag=max_lag),
    )
    return report, faults


def _group(kind: str) -> str:
    return ENGINE_GROUP if kind == "engine" else PROJECTOR_GROUP


def _describe(err: BaseException) -> str:
    # Type and message only, bounded: never a traceback, never connection settings.
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return text[:MAX_MESSAGE]


def producer_running(producer: Any) -> bool:
    # aiokafka has no public "is started" flag; its sender task exists only between
    # start() and stop(), and dies if the producer fails fatally.
    if getattr(producer, "_closed", True):
        return False
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return task is not None and not task.done()


async def _database(pool: Any) -> tuple[str | None, dict[int, int] | None]:
    try:
        async with asyncio.timeout(DB_TIMEOUT_S):
            rows = await pool.fetch(_STORED, PROJECTOR_NAME, TOPIC_EVENTS)
    except Exception as err:  # any failure means "not reachable", and says why
        return _describe(err), None
    return None, {r["partition"]: r["next_offset"] for r in rows}


async def _cluster(
    cluster: ClusterProbe,
) -> tuple[str | None, dict[str, GroupMembers] | None, dict[int, int] | None]:
    try:
        groups, ends = await asyncio.gather(
            cluster.groups(extra=(ENGINE_GROUP, PROJECTOR_GROUP)),
            cluster.end_offsets(TOPIC_EVENTS),
        )
    except Exception as err:  # any failure means "not reachable", and says why
        return _describe(err), None, None
    return None, groups, ends


@router.get(
    "/health",
    responses=problems.responses(503),
    summary="Health of the stack: database, Kafka, each process kind, the projection's lag",
)
async def health(pool: Pool, producer: Producer, cluster: Cluster) -> Health:
    (database_error, stored), (kafka_error, groups, ends) = await asyncio.gather(
        _database(pool), _cluster(cluster)
    )
    seen = Observed(
        database_error,
        stored,
        producer_running(producer.producer),
        kafka_error,
        groups,
        ends,
        publishing_failed=producer.gate.status == "unavailable",
    )
    report, faults = assess(seen)
    if faults:
        raise Problem(
            503,
            "Service Unavailable",
            "; ".join(f"{p}: {m}" for p, m in faults),
            kind="unhealthy",
            errors=faults,
            extra={"health": report.model_dump(mode="json")},
        )
    return report
