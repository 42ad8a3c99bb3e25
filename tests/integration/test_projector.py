"""The projector against real Kafka and PostgreSQL: events decided by the domain, produced to
the events topic, projected in-process; then the rebuild invariant (DESIGN §3.1).

The test owns a database of its own (other tests write rows straight into the read models of
the session database) and a consumer group of its own; the events topic is the real one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from projections import ALL_TABLES, apply_batch
from projections.tables import ts
from services.adapters.avro import Codec
from services.adapters.kafka import (
    TOPIC_DEADLETTER,
    ensure_topics,
    new_consumer,
    new_producer,
)
from services.adapters.postgres import apply_migrations, connect_pool
from services.adapters.settings import Settings
from services.domain.commands import (
    FireTimers,
    InstanceCommand,
    PushWorkflow,
    ReportAttemptFailed,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    RestartInstance,
    StartInstance,
    StopInstance,
)
from services.domain.decide import decide, decide_workflow
from services.domain.definition import parse_workflow
from services.domain.events import Event, InstanceStarted, StepAttemptFailed
from services.domain.evolve import evolve, evolve_workflow
from services.domain.state import InstanceState, WorkflowState
from services.domain.statuses import FailureKind, InstanceStatus, StepStatus
from services.projector.consumer import PROJECTOR_NAME, Projector
from tests.helpers import own_database, wait_until_async

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in UTC micros
PROJECTION_TIMEOUT_S = 60.0


def _suffix() -> str:
    return uuid.uuid4().hex[:10]


def diamond(workflow_id: str, description: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "name": "Diamond",
        "description": description,
        "tags": ["projector", "test"],
        "steps": [
            {"id": "a", "type": "noop", "next": ["b", "c"]},
            {"id": "b", "type": "noop", "next": ["d"]},
            {"id": "c", "type": "shell", "command": "echo c", "next": ["d"]},
            {"id": "d", "type": "noop"},
        ],
    }


def flaky(workflow_id: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "steps": [
            {
                "id": "flaky",
                "type": "shell",
                "command": "exit 1",
                "retry_policy": {
                    "user_limit": 1,
                    "backoff": {"type": "fixed", "user_seconds": 5},
                },
            }
        ],
    }


@dataclass
class Run:
    """One instance driven through `decide`, its events kept in order."""

    instance_id: str
    now: int
    state: InstanceState | None = None
    events: list[Event] = field(default_factory=list)

    def do(self, command: InstanceCommand, after_micros: int = 1_000) -> list[Event]:
        self.now += after_micros
        new = decide(self.state, command, self.now)
        for e in new:
            self.state = evolve(self.state, e)
        self.events += new
        return new

    @property
    def final(self) -> InstanceState:
        assert self.state is not None
        return self.state

    def starting(self) -> list[tuple[str, int]]:
        return [
            (s, st.attempt)
            for s, st in self.final.steps.items()
            if st.status is StepStatus.STARTING
        ]

    def run_all_to_success(self) -> None:
        while self.starting():
            for step_id, attempt in self.starting():
                self.do(ReportAttemptStarted(self.instance_id, step_id, attempt, "w1"))
                self.do(ReportAttemptSucceeded(self.instance_id, step_id, attempt, '{"x": 1}'))


def start(instance_id: str, workflow_id: str, definition: dict[str, Any], now: int) -> Run:
    run = Run(instance_id, now)
    canonical = parse_workflow(definition).to_json()
    run.do(
        StartInstance(instance_id, workflow_id, 1, canonical, "{}", "test", f"key-{instance_id}")
    )
    return run


def push_versions(workflow_id: str, definitions: list[dict[str, Any]]) -> list[Event]:
    state: WorkflowState | None = None
    events = []
    for i, definition in enumerate(definitions):
        cmd = PushWorkflow(workflow_id, json.dumps(definition))
        for e in decide_workflow(state, cmd, T0 + i * 1_000_000):
            state = evolve_workflow(state, e)
            events.append(e)
    return events


@dataclass
class Scenario:
    workflow_events: list[Event]
    succeeded: Run
    failed: Run
    restarted: Run
    workflow_id: str

    @property
    def runs(self) -> tuple[Run, Run, Run]:
        return (self.succeeded, self.failed, self.restarted)

    def events(self) -> Iterator[Event]:
        yield from self.workflow_events
        for run in self.runs:
            yield from run.events


def build_scenario() -> Scenario:
    x = _suffix()
    wf_diamond, wf_flaky = f"proj{x}.diamond", f"proj{x}.flaky"
    workflow_events = push_versions(
        wf_diamond, [diamond(wf_diamond, "first"), diamond(wf_diamond, "second")]
    )

    ok = start(f"proj-{x}-ok", wf_diamond, diamond(wf_diamond, "first"), T0 + 10_000_000)
    ok.run_all_to_success()
    assert ok.final.status is InstanceStatus.SUCCEEDED

    bad = start(f"proj-{x}-bad", wf_flaky, flaky(wf_flaky), T0 + 20_000_000)
    iid = bad.instance_id
    bad.do(ReportAttemptStarted(iid, "flaky", 1, "w2"))
    bad.do(ReportAttemptFailed(iid, "flaky", 1, FailureKind.USER, "exit 1", "boom"))
    assert bad.final.steps["flaky"].status is StepStatus.WAITING_FOR_RETRY
    retry_at = bad.final.steps["flaky"].retry_at
    assert retry_at is not None
    bad.do(FireTimers(iid), after_micros=retry_at - bad.now)
    bad.do(ReportAttemptStarted(iid, "flaky", 2, "w2"))
    bad.do(ReportAttemptFailed(iid, "flaky", 2, FailureKind.USER, "exit 1 again", "boom"))
    assert bad.final.status is InstanceStatus.FAILED

    again = start(f"proj-{x}-again", wf_diamond, diamond(wf_diamond, "first"), T0 + 30_000_000)
    iid = again.instance_id
    again.do(ReportAttemptStarted(iid, "a", 1, "w3"))
    again.do(StopInstance(iid))
    assert again.final.status is InstanceStatus.STOPPED
    again.do(RestartInstance(iid))
    assert again.starting() == [("a", 2)]  # the new run began again at a
    return Scenario(workflow_events, ok, bad, again, wf_diamond)


# --- fixtures and plumbing ---------------------------------------------------------------


@pytest.fixture
async def pool(postgres: str) -> AsyncIterator[asyncpg.Pool]:
    url = await asyncio.to_thread(own_database, postgres, f"baton_projector_{_suffix()}")
    pool = await connect_pool(url)
    try:
        await apply_migrations(pool)
        yield pool
    finally:
        await pool.close()


# Its own events topic: the garbage this test writes must not reach baton.events, which
# the engines of later tests fold (and refuse to fold past an undecodable event).
EVENTS = "itest.projector.events"


async def _create_topic(kafka: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, partitions, 1)])
        await wait_until_async(lambda: _has_leaders(admin, name), timeout=30)
    finally:
        await admin.close()


async def _has_leaders(admin: AIOKafkaAdminClient, name: str) -> bool:
    (topic,) = await admin.describe_topics([name])
    parts = topic.get("partitions") or []
    return bool(parts) and all(p.get("leader", -1) >= 0 for p in parts)


@asynccontextmanager
async def running(kafka: str, pool: asyncpg.Pool) -> AsyncIterator[Projector]:
    projector = Projector(
        kafka, pool, Codec(), group_id=f"test-projector-{_suffix()}", topic=EVENTS
    )
    task = asyncio.create_task(projector.run())
    try:
        yield projector
    finally:
        projector.stop()
        await asyncio.wait_for(task, 30)


async def wait_caught_up(projector: Projector) -> None:
    await wait_until_async(
        projector.caught_up, PROJECTION_TIMEOUT_S, message="projector reaches the end of the log"
    )


async def produce(kafka: str, codec: Codec, events: list[Event]) -> None:
    producer = new_producer(kafka)
    await producer.start()
    try:
        sent = [
            await producer.send(EVENTS, codec.encode_event(e), key=e.key.encode()) for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def produce_garbage(kafka: str, key: str) -> tuple[int, int]:
    producer = new_producer(kafka)
    await producer.start()
    try:
        meta = await producer.send_and_wait(EVENTS, b"garbage", key=key.encode())
        return meta.partition, meta.offset
    finally:
        await producer.stop()


async def dead_letters(kafka: str, partition: int, offset: int) -> list[dict[str, bytes]]:
    """The headers of every dead-lettered copy of events[partition]@offset, read to the end."""
    consumer = new_consumer(kafka, None)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC_DEADLETTER, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found = []
        async with asyncio.timeout(PROJECTION_TIMEOUT_S):
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    headers = {k: v for k, v in record.headers}
                    if (
                        headers.get("source_topic") == EVENTS.encode()
                        and headers.get("source_partition") == str(partition).encode()
                        and headers.get("source_offset") == str(offset).encode()
                    ):
                        assert record.value == b"garbage"
                        found.append(headers)
        return found
    finally:
        await consumer.stop()


Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot(pool: asyncpg.Pool) -> Snapshot:
    out: Snapshot = {}
    async with pool.acquire() as conn:
        for table in ALL_TABLES:
            order = ", ".join(table.key)
            rows = await conn.fetch(f"SELECT * FROM {table.name} ORDER BY {order}")
            out[table.name] = [tuple(r) for r in rows]
        out["projector_offsets"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT * FROM projector_offsets WHERE projector = $1 ORDER BY topic, partition",
                PROJECTOR_NAME,
            )
        ]
    return out


async def instance_statuses(pool: asyncpg.Pool, ids: list[str]) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT instance_id, status, last_seq FROM instances WHERE instance_id = ANY($1)", ids
    )
    return {r["instance_id"]: f"{r['status']}@{r['last_seq']}" for r in rows}


# --- the test ----------------------------------------------------------------------------


async def test_projection_from_the_log_and_its_rebuild(
    kafka: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    await ensure_topics(kafka, settings.partitions)
    await _create_topic(kafka, EVENTS, settings.partitions)
    codec = Codec()
    sc = build_scenario()
    expected = {r.instance_id: f"{r.final.status.value}@{r.final.seq}" for r in sc.runs}

    # A malformed record ahead of the events of one instance, in the same partition: the
    # projector must dead-letter it and keep going.
    bad_partition, bad_offset = await produce_garbage(kafka, sc.succeeded.instance_id)
    await produce(kafka, codec, list(sc.events()))

    async def instances_final() -> bool:
        return await instance_statuses(pool, list(expected)) == expected

    async def same_positions() -> bool:
        return (await snapshot(pool))["projector_offsets"] == before["projector_offsets"]

    async with running(kafka, pool) as projector:
        await wait_until_async(
            instances_final, PROJECTION_TIMEOUT_S, message=f"instances reach {expected}"
        )
        await wait_caught_up(projector)
    [headers] = await dead_letters(kafka, bad_partition, bad_offset)
    assert b"magic" in headers["reason"]
    before = await snapshot(pool)

    await assert_rows(pool, sc)

    # Rebuild: empty every read model and the positions, project again from offset 0.
    async with pool.acquire() as conn:
        names = ", ".join([t.name for t in ALL_TABLES] + ["projector_offsets"])
        await conn.execute(f"TRUNCATE {names}")
    async with running(kafka, pool) as projector:
        await wait_until_async(
            same_positions, PROJECTION_TIMEOUT_S, message="the rebuild reaches the same positions"
        )
        await wait_caught_up(projector)
    after = await snapshot(pool)
    # Replayed from 0, the garbage is dead-lettered once more (one copy per pass), not twice.
    assert len(await dead_letters(kafka, bad_partition, bad_offset)) == 2
    for name in before:
        assert after[name] == before[name], f"{name} differs after a rebuild"

    # Re-delivered events change nothing.
    async with pool.acquire() as conn, conn.transaction():
        assert await apply_batch(conn, list(sc.events())) == 0
    assert await snapshot(pool) == before

    # A restarted projector resumes at its stored positions: it sees only the new event
    # (from offset 0 it would dead-letter the garbage again).
    again = sc.restarted
    new = again.do(ReportAttemptStarted(again.instance_id, "a", 2, "w4"))
    await produce(kafka, codec, new)

    async def new_event_applied() -> bool:
        statuses = await instance_statuses(pool, [again.instance_id])
        return statuses == {again.instance_id: f"IN_PROGRESS@{again.final.seq}"}

    async with running(kafka, pool) as projector:
        await wait_until_async(new_event_applied, PROJECTION_TIMEOUT_S, message="resumed")
        await wait_caught_up(projector)
    assert (projector.applied_events, projector.dead_lettered) == (1, 0)
    row = await pool.fetchrow(
        "SELECT status, worker_id FROM attempts WHERE instance_id = $1 AND attempt = 2",
        again.instance_id,
    )
    assert row is not None
    assert tuple(row) == ("RUNNING", "w4")


async def assert_rows(pool: asyncpg.Pool, sc: Scenario) -> None:
    async with pool.acquire() as conn:
        await assert_workflow(conn, sc)
        await assert_succeeded(conn, sc.succeeded)
        await assert_failed(conn, sc.failed)
        await assert_restarted(conn, sc.restarted)
        for run in sc.runs:
            history = await conn.fetch(
                "SELECT seq, event_id, type, occurred_at, payload FROM events"
                " WHERE aggregate_id = $1 ORDER BY seq",
                run.instance_id,
            )
            assert [(r["seq"], r["event_id"], r["type"]) for r in history] == [
                (e.seq, e.event_id, e.type) for e in run.events
            ]
            assert [r["occurred_at"] for r in history] == [ts(e.occurred_at) for e in run.events]
            # Steps agree with the domain's own fold of the same events.
            steps = await conn.fetch(
                "SELECT step_id, status, attempt FROM steps WHERE instance_id = $1 ORDER BY position",
                run.instance_id,
            )
            assert [(r["step_id"], r["status"], r["attempt"]) for r in steps] == [
                (sid, st.status.value, st.attempt) for sid, st in run.final.steps.items()
            ]


async def assert_workflow(conn: Any, sc: Scenario) -> None:
    wf = await conn.fetchrow("SELECT * FROM workflows WHERE workflow_id = $1", sc.workflow_id)
    v1, v2 = sc.workflow_events
    assert wf["latest_version"] == 2
    assert (wf["name"], wf["description"]) == ("Diamond", "second")
    assert json.loads(wf["tags"]) == ["projector", "test"]
    assert (wf["created_at"], wf["updated_at"]) == (ts(v1.occurred_at), ts(v2.occurred_at))
    versions = await conn.fetch(
        "SELECT version, definition FROM workflow_versions WHERE workflow_id = $1 ORDER BY version",
        sc.workflow_id,
    )
    assert [r["version"] for r in versions] == [1, 2]
    assert json.loads(versions[1]["definition"])["description"] == "second"


async def assert_succeeded(conn: Any, run: Run) -> None:
    last = run.events[-1]
    inst = await conn.fetchrow("SELECT * FROM instances WHERE instance_id = $1", run.instance_id)
    started = run.events[0].payload
    assert isinstance(started, InstanceStarted)
    assert (inst["status"], inst["run"], inst["version"]) == ("SUCCEEDED", 1, 1)
    assert (inst["initiator"], inst["idempotency_key"]) == ("test", f"key-{run.instance_id}")
    assert json.loads(inst["params"]) == {}
    assert inst["failure_reason"] is None and json.loads(inst["failed_steps"]) == []
    assert inst["created_at"] == ts(run.events[0].occurred_at)
    assert inst["ended_at"] == inst["updated_at"] == ts(last.occurred_at)
    assert inst["last_seq"] == last.seq

    steps = await conn.fetch(
        "SELECT step_id, position, step_type, run FROM steps WHERE instance_id = $1"
        " ORDER BY position",
        run.instance_id,
    )
    assert [tuple(r) for r in steps] == [
        ("a", 0, "noop", 1),
        ("b", 1, "noop", 1),
        ("c", 2, "shell", 1),
        ("d", 3, "noop", 1),
    ]
    attempts = await conn.fetch(
        "SELECT * FROM attempts WHERE instance_id = $1 ORDER BY step_id", run.instance_id
    )
    assert [(r["step_id"], r["attempt"], r["status"]) for r in attempts] == [
        (s, 1, "SUCCEEDED") for s in "abcd"
    ]
    for r in attempts:
        assert (r["queue"], r["worker_id"], r["run"]) == ("default", "w1", 1)
        assert json.loads(r["outputs"]) == {"x": 1}
        assert r["created_at"] < r["started_at"] < r["ended_at"]
        assert r["failure_kind"] is None and r["retry_at"] is None


async def assert_failed(conn: Any, run: Run) -> None:
    inst = await conn.fetchrow("SELECT * FROM instances WHERE instance_id = $1", run.instance_id)
    assert inst["status"] == "FAILED"
    assert inst["failure_reason"] == "step(s) failed: flaky"
    assert json.loads(inst["failed_steps"]) == ["flaky"]
    assert inst["ended_at"] == ts(run.events[-1].occurred_at)

    step = await conn.fetchrow("SELECT * FROM steps WHERE instance_id = $1", run.instance_id)
    assert (step["status"], step["attempt"]) == ("USER_FAILED", 2)
    failures = [e for e in run.events if isinstance(e.payload, StepAttemptFailed)]
    attempts = await conn.fetch(
        "SELECT * FROM attempts WHERE instance_id = $1 ORDER BY attempt", run.instance_id
    )
    assert len(attempts) == 2
    for row, e in zip(attempts, failures, strict=True):
        assert isinstance(e.payload, StepAttemptFailed)
        assert (row["status"], row["failure_kind"]) == ("USER_FAILED", "USER")
        assert (row["message"], row["output_tail"]) == (e.payload.message, "boom")
        assert row["ended_at"] == ts(e.occurred_at)
        assert row["worker_id"] == "w2"
    first = failures[0].payload
    assert isinstance(first, StepAttemptFailed) and first.retry_at is not None
    assert attempts[0]["retry_at"] == ts(first.retry_at)
    assert attempts[1]["retry_at"] is None


async def assert_restarted(conn: Any, run: Run) -> None:
    inst = await conn.fetchrow("SELECT * FROM instances WHERE instance_id = $1", run.instance_id)
    assert (inst["status"], inst["run"]) == ("IN_PROGRESS", 2)
    assert inst["ended_at"] is None and inst["failure_reason"] is None
    steps = await conn.fetch(
        "SELECT step_id, status, attempt, run FROM steps WHERE instance_id = $1 ORDER BY position",
        run.instance_id,
    )
    assert [tuple(r) for r in steps] == [
        ("a", "STARTING", 2, 2),
        ("b", "NOT_CREATED", 0, 2),
        ("c", "NOT_CREATED", 0, 2),
        ("d", "NOT_CREATED", 0, 2),
    ]
    attempts = await conn.fetch(
        "SELECT attempt, run, status, message, ended_at FROM attempts"
        " WHERE instance_id = $1 ORDER BY attempt",
        run.instance_id,
    )
    assert [(r["attempt"], r["run"], r["status"]) for r in attempts] == [
        (1, 1, "STOPPED"),
        (2, 2, "STARTING"),
    ]
    assert attempts[0]["ended_at"] is not None and attempts[1]["ended_at"] is None
