"""The worker against a real Kafka: tasks in, reports out, offsets committed, bad records dead-lettered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.adapters.avro import Codec
from services.adapters.kafka import (
    TOPIC_COMMANDS,
    TOPIC_DEADLETTER,
    ensure_topics,
    new_consumer,
    new_producer,
    task_topic,
)
from services.adapters.publish import send_command
from services.adapters.settings import REPO_ROOT, Settings
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.commands import (
    Command,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
)
from services.domain.protocol.tasks import Task
from services.worker.runner import Worker, WorkerOptions, group_id
from services.worker.runtimes.contract import StepOutcome, StepRuntime
from services.worker.runtimes.registry import default_runtimes
from tests.helpers import wait_until_async

pytestmark = pytest.mark.integration

QUEUE = "itest"
DEADLINE = 60.0


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.fixture
async def topics(kafka: str, settings: Settings) -> str:
    await ensure_topics(
        kafka,
        settings.partitions,
        [QUEUE, "itest-stop", "itest-concurrency", "itest-cancel", "itest-bug"],
    )
    return kafka


@pytest.fixture
async def producer(topics: str) -> AsyncIterator[AIOKafkaProducer]:
    p = new_producer(topics)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@dataclass
class Collector:
    """Every record of a topic from the beginning, as it arrives (read_committed)."""

    records: list[Any] = field(default_factory=list)


@asynccontextmanager
async def collecting(bootstrap: str, topic: str) -> AsyncIterator[Collector]:
    consumer = new_consumer(bootstrap, None, topic)
    await consumer.start()
    collector = Collector()

    async def pump() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                collector.records.extend(records)

    task = asyncio.ensure_future(pump())
    try:
        yield collector
    finally:
        task.cancel()
        await asyncio.wait((task,))
        await consumer.stop()


def reports(collector: Collector, codec: Codec, instance_id: str) -> list[Command]:
    # The commands topic is shared with other tests (one of them writes garbage to it on
    # purpose): keep this instance's records only, by key, before decoding.
    key = instance_id.encode()
    return [codec.decode_command(r.value).payload for r in collector.records if r.key == key]


@asynccontextmanager
async def running_worker(
    bootstrap: str,
    codec: Codec,
    queue: str,
    runtimes: Mapping[str, StepRuntime] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Worker, AIOKafkaConsumer, asyncio.Task[None]]]:
    producer = new_producer(bootstrap)
    consumer = new_consumer(bootstrap, group_id(queue))
    opts = WorkerOptions(queue=queue, worker_id="itest-worker", **options)
    if runtimes is None:
        runtimes = default_runtimes(cwd=str(REPO_ROOT))
    worker = Worker(consumer, producer, codec, runtimes, opts)
    await producer.start()
    await consumer.start()
    run = asyncio.ensure_future(worker.run())
    try:
        yield worker, consumer, run
    finally:
        worker.stop()
        await asyncio.wait_for(run, DEADLINE)
        await consumer.stop()
        await producer.stop()


def make_task(
    instance_id: str,
    step_type: str,
    config: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    queue: str = QUEUE,
    timeout: float | None = None,
) -> Task:
    return Task(
        instance_id=instance_id,
        workflow_id="wf-itest",
        step_id="s1",
        attempt=1,
        run=1,
        step_type=step_type,
        queue=queue,
        config=json.dumps(config or {}),
        params=json.dumps(params or {}),
        timeout_seconds=timeout,
        created_at=0,
    )


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


async def test_worker_reports_each_task_and_commits_offsets(
    topics: str, producer: AIOKafkaProducer, codec: Codec
) -> None:
    tasks = {
        "noop": make_task(new_id("noop"), "noop"),
        "shell": make_task(
            new_id("shell"),
            "shell",
            {"command": 'printf \'{"greeting": "hi %s"}\' "$WHO" > "$BATON_OUTPUTS"'},
            {"WHO": "ada"},
        ),
        "exit": make_task(new_id("exit"), "shell", {"command": "echo oops >&2; exit 3"}),
        "slow": make_task(new_id("slow"), "shell", {"command": "sleep 1.5"}),
        "python": make_task(
            new_id("py"), "python", {"function": "examples.steps:add"}, {"a": 2, "b": 5}
        ),
        "timeout": make_task(new_id("timeout"), "shell", {"command": "sleep 30"}, timeout=0.5),
        "unknown": make_task(new_id("unknown"), "teleport"),
    }
    async with collecting(topics, TOPIC_COMMANDS) as commands:
        metas = [
            await producer.send_and_wait(
                task_topic(QUEUE), codec.encode_task(t), key=t.instance_id.encode()
            )
            for t in tasks.values()
        ]
        async with running_worker(topics, codec, QUEUE, heartbeat_seconds=0.3) as (_, consumer, _):

            def finished(t: Task) -> bool:
                return any(
                    isinstance(c, ReportAttemptSucceeded | ReportAttemptFailed)
                    for c in reports(commands, codec, t.instance_id)
                )

            await wait_until_async(
                lambda: all(finished(t) for t in tasks.values()),
                timeout=DEADLINE,
                message="a result report for every task",
            )

            # Offsets are committed once the results are acked, up to the last task.
            ends: dict[TopicPartition, int] = {}
            for m in metas:
                tp = TopicPartition(m.topic, m.partition)
                ends[tp] = max(ends.get(tp, 0), m.offset + 1)

            async def committed() -> bool:
                for tp, end in ends.items():
                    offset = await consumer.committed(tp)
                    if offset is None or offset < end:
                        return False
                return True

            await wait_until_async(committed, timeout=DEADLINE, message="offsets committed")

    def of(name: str) -> list[Command]:
        return reports(commands, codec, tasks[name].instance_id)

    for name, task in tasks.items():
        cmds = of(name)
        assert cmds[0] == ReportAttemptStarted(task.instance_id, "s1", 1, "itest-worker"), name
        results = [c for c in cmds if isinstance(c, ReportAttemptSucceeded | ReportAttemptFailed)]
        assert len(results) == 1, (name, cmds)
        assert cmds[-1] is results[0], (name, cmds)

    assert of("noop")[1:] == [ReportAttemptSucceeded(tasks["noop"].instance_id, "s1", 1, "{}")]
    assert of("shell")[-1] == ReportAttemptSucceeded(
        tasks["shell"].instance_id, "s1", 1, '{"greeting":"hi ada"}'
    )
    assert of("python")[-1] == ReportAttemptSucceeded(
        tasks["python"].instance_id, "s1", 1, '{"sum":7}'
    )

    exit_report = of("exit")[-1]
    assert isinstance(exit_report, ReportAttemptFailed)
    assert (exit_report.kind, exit_report.message) == (FailureKind.USER, "exit code 3")
    assert exit_report.output_tail == "oops\n"

    timeout_report = of("timeout")[-1]
    assert isinstance(timeout_report, ReportAttemptFailed)
    assert timeout_report.kind is FailureKind.TIMEOUT
    assert timeout_report.message == "step timed out after 0.5s"

    unknown_report = of("unknown")[-1]
    assert isinstance(unknown_report, ReportAttemptFailed)
    assert unknown_report.kind is FailureKind.PLATFORM
    assert unknown_report.message == "no runtime for step type teleport"

    slow = of("slow")
    heartbeats = [c for c in slow if isinstance(c, ReportAttemptHeartbeat)]
    assert len(heartbeats) >= 2, slow
    assert heartbeats[0] == ReportAttemptHeartbeat(
        tasks["slow"].instance_id, "s1", 1, "itest-worker"
    )
    assert isinstance(slow[-1], ReportAttemptSucceeded)
    assert not [c for c in of("noop") if isinstance(c, ReportAttemptHeartbeat)]


class _BuggyRuntime:
    """A runtime with a bug whose exception message holds what it was handed (as a DSN or a
    token would be, in a real runtime's error)."""

    async def run(self, task: Task) -> StepOutcome:
        raise RuntimeError("cannot use postgresql://steps:hunter2@db/prod")


async def test_a_runtime_bug_is_reported_without_its_message_or_traceback(
    topics: str, producer: AIOKafkaProducer, codec: Codec
) -> None:
    """A report is kept in baton.events for ever and served by the API: a worker's own bug
    names its exception's type there, and leaves its message and traceback to the worker's log."""
    task = make_task(new_id("bug"), "buggy", queue="itest-bug")
    async with collecting(topics, TOPIC_COMMANDS) as commands:
        await producer.send_and_wait(
            task_topic("itest-bug"), codec.encode_task(task), key=task.instance_id.encode()
        )
        async with running_worker(topics, codec, "itest-bug", {"buggy": _BuggyRuntime()}):
            await wait_until_async(
                lambda: any(
                    isinstance(c, ReportAttemptFailed)
                    for c in reports(commands, codec, task.instance_id)
                ),
                timeout=DEADLINE,
                message="the failure report",
            )
    [failed] = [
        c for c in reports(commands, codec, task.instance_id) if isinstance(c, ReportAttemptFailed)
    ]
    assert failed.kind is FailureKind.PLATFORM
    assert "RuntimeError" in failed.message
    assert "hunter2" not in failed.message + failed.output_tail
    assert "Traceback" not in failed.output_tail


async def test_malformed_task_goes_to_dead_letter_and_worker_keeps_going(
    topics: str, producer: AIOKafkaProducer, codec: Codec
) -> None:
    topic = task_topic(QUEUE)
    after = make_task(new_id("after-bad"), "noop")
    async with (
        collecting(topics, TOPIC_COMMANDS) as commands,
        collecting(topics, TOPIC_DEADLETTER) as dead,
    ):
        bad = await producer.send_and_wait(topic, b"\x00not a task", key=b"bad", partition=0)
        await producer.send_and_wait(topic, codec.encode_task(after), key=b"good", partition=0)
        async with running_worker(topics, codec, QUEUE):

            def dead_lettered() -> list[Any]:
                return [
                    r
                    for r in dead.records
                    if dict(r.headers).get("source_offset") == str(bad.offset).encode()
                    and dict(r.headers).get("source_topic") == topic.encode()
                ]

            await wait_until_async(dead_lettered, timeout=DEADLINE, message="the dead letter")
            await wait_until_async(
                lambda: any(
                    isinstance(c, ReportAttemptSucceeded)
                    for c in reports(commands, codec, after.instance_id)
                ),
                timeout=DEADLINE,
                message="the task after the malformed one succeeded",
            )

    (letter,) = dead_lettered()
    headers = dict(letter.headers)
    assert letter.value == b"\x00not a task"
    assert headers["source_partition"] == b"0"
    assert headers["reason"]


async def test_shutdown_kills_running_tasks_unreported_and_uncommitted(
    topics: str, producer: AIOKafkaProducer, codec: Codec
) -> None:
    queue = "itest-stop"
    task = make_task(new_id("long"), "shell", {"command": "sleep 30"}, queue=queue)
    async with collecting(topics, TOPIC_COMMANDS) as commands:
        meta = await producer.send_and_wait(
            task_topic(queue), codec.encode_task(task), key=task.instance_id.encode()
        )
        tp = TopicPartition(meta.topic, meta.partition)
        async with running_worker(topics, codec, queue, shutdown_grace_seconds=0.2) as (
            worker,
            consumer,
            run,
        ):
            await wait_until_async(
                lambda: reports(commands, codec, task.instance_id),
                timeout=DEADLINE,
                message="the long task started",
            )
            worker.stop()
            await asyncio.wait_for(asyncio.shield(run), DEADLINE)
            committed = await consumer.committed(tp)

    assert committed is None or committed <= meta.offset
    assert all(
        isinstance(c, ReportAttemptStarted | ReportAttemptHeartbeat)
        for c in reports(commands, codec, task.instance_id)
    )


async def test_tasks_run_concurrently_up_to_the_limit(
    topics: str, producer: AIOKafkaProducer, codec: Codec, tmp_path: Path
) -> None:
    queue = "itest-concurrency"
    log = tmp_path / "log"
    command = 'echo start >> "$LOG"; sleep 0.5; echo end >> "$LOG"'
    tasks = [
        make_task(new_id("conc"), "shell", {"command": command}, {"LOG": str(log)}, queue=queue)
        for _ in range(5)
    ]
    async with collecting(topics, TOPIC_COMMANDS) as commands:
        for t in tasks:
            await producer.send_and_wait(
                task_topic(queue), codec.encode_task(t), key=t.instance_id.encode()
            )
        async with running_worker(topics, codec, queue, concurrency=2):
            await wait_until_async(
                lambda: all(
                    any(
                        isinstance(c, ReportAttemptSucceeded)
                        for c in reports(commands, codec, t.instance_id)
                    )
                    for t in tasks
                ),
                timeout=DEADLINE,
                message="every task succeeded",
            )

    running = peak = 0
    for line in read_lines(log):
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak == 2


def read_lines(path: Path) -> list[str]:
    return path.read_text().split()


async def test_a_cancelled_attempt_is_killed_unreported_and_its_offset_committed(
    topics: str, producer: AIOKafkaProducer, codec: Codec
) -> None:
    queue = "itest-cancel"
    task = make_task(new_id("cancel"), "shell", {"command": "sleep 30"}, queue=queue)
    key = (task.instance_id, task.step_id, task.attempt)
    async with collecting(topics, TOPIC_COMMANDS) as commands:
        meta = await producer.send_and_wait(
            task_topic(queue), codec.encode_task(task), key=task.instance_id.encode()
        )
        async with running_worker(topics, codec, queue) as (worker, consumer, _):
            await wait_until_async(
                lambda: any(
                    isinstance(c, ReportAttemptStarted)
                    for c in reports(commands, codec, task.instance_id)
                ),
                timeout=DEADLINE,
            )
            worker.cancel(key, "test")
            tp = TopicPartition(meta.topic, meta.partition)

            async def committed() -> bool:
                offset = await consumer.committed(tp)
                return offset is not None and offset > meta.offset

            await wait_until_async(committed, timeout=DEADLINE, message="offset committed")
            assert worker.running == 0
        # A marker on the same key lands after any report the worker could have sent.
        await send_command(
            producer, codec, ReportAttemptHeartbeat(task.instance_id, task.step_id, 99, "marker")
        )
        await wait_until_async(
            lambda: any(
                isinstance(c, ReportAttemptHeartbeat) and c.attempt == 99
                for c in reports(commands, codec, task.instance_id)
            ),
            timeout=DEADLINE,
        )
    results = [
        c
        for c in reports(commands, codec, task.instance_id)
        if isinstance(c, ReportAttemptSucceeded | ReportAttemptFailed)
    ]
    assert results == []
