"""The scenario of the projector integration test, decided by the domain in memory: a workflow
pushed twice and three instances (succeeded, failed after a retry, stopped and restarted);
and the read-model rows that projecting its events must produce.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from projections.tables import ts
from services.domain.decider import decide
from services.domain.instance.evolve import evolve_instance as evolve
from services.domain.instance.state import InstanceState
from services.domain.kernel.statuses import FailureKind, InstanceStatus, StepStatus
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
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
from services.domain.protocol.events import (
    Event,
    InstanceStarted,
    StepAttemptFailed,
    WorkflowVersionCreated,
)
from services.domain.workflow.decide import decide_workflow
from services.domain.workflow.evolve import evolve_workflow
from services.domain.workflow.state import WorkflowState
from tests.integration.projector_harness import suffix

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in UTC micros


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
        # A worker's report was issued a little before the engine decided it.
        reported = isinstance(
            command, ReportAttemptStarted | ReportAttemptSucceeded | ReportAttemptFailed
        )
        new = decide(self.state, command, self.now, self.now - 300 if reported else None).events
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
        for e in decide_workflow(state, cmd, T0 + i * 1_000_000).events:
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
    x = suffix()
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


# --- the rows it must project to ---------------------------------------------------------


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
    v1, v2 = [e for e in sc.workflow_events if isinstance(e.payload, WorkflowVersionCreated)]
    assert wf["latest_version"] == 2
    assert wf["active_version"] == 2  # each push activated its version
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
        assert e.caused_at is not None
        assert row["ended_at"] == ts(e.caused_at)  # the worker's clock, not the decision's
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
