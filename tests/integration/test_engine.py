"""The engine on real Kafka: transactions out, recovery by folding, dead letters."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.adapters.avro import Codec
from services.adapters.kafka import (
    TOPIC_COMMANDS,
    TOPIC_DEADLETTER,
    new_consumer,
    new_producer,
    partition_for,
)
from services.adapters.publish import send_command
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.commands import StartInstance
from services.domain.protocol.events import StepAttemptStarted, StepAttemptSucceeded
from services.domain.protocol.tasks import Task
from services.engine import shard as shard_module
from services.engine.engine import GROUP_ID
from services.engine.outbox import Outbox
from services.engine.snapshots import Capture
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    PARTITIONS,
    EventLog,
    definition,
    following_events,
    prepare_topics,
    push,
    running_engine,
    scripted_worker,
    start_instance,
)

pytestmark = pytest.mark.integration

DIAMOND: list[dict[str, object]] = [
    {"id": "a", "type": "noop", "next": ["b", "c"]},
    {"id": "b", "type": "noop", "next": ["d"]},
    {"id": "c", "type": "sleep", "duration": "200ms", "next": ["d"]},
    {"id": "d", "type": "noop"},
]


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    await prepare_topics(kafka, "itest-engine")
    p = new_producer(kafka)
    await p.start()
    yield p
    await p.stop()


def succeed_all(task: Task) -> FailureKind | None:
    return None


async def test_diamond_runs_to_success_with_gapless_events(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    wf = definition("diamond", DIAMOND)
    async with (
        following_events(kafka) as log,
        running_engine(kafka),
        scripted_worker(kafka, "default", succeed_all) as tasks,
    ):
        await push(producer, "diamond", wf)
        iid = await start_instance(producer, "diamond", wf)
        await wait_until_async(lambda: "InstanceSucceeded" in log.types(iid), timeout=30)
        await wait_until_async(
            lambda: any(e.type == "WorkflowVersionCreated" for e in log.events), timeout=10
        )
    events = log.of(iid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    succeeded = [e.payload.step_id for e in events if e.type == "StepAttemptSucceeded"]  # type: ignore[union-attr]
    assert sorted(succeeded) == ["a", "b", "c", "d"]
    assert sorted(t.step_id for t in tasks if t.instance_id == iid) == ["a", "b", "d"]


async def test_retries_then_success(kafka: str, producer: AIOKafkaProducer) -> None:
    steps = [
        {
            "id": "flaky",
            "type": "noop",
            "queue": "itest-engine",
            "retry_policy": {"user_limit": 2, "backoff": {"type": "fixed", "user_seconds": 0.1}},
        }
    ]
    wf = definition("flaky", steps)

    def fail_twice(task: Task) -> FailureKind | None:
        return FailureKind.USER if task.attempt < 3 else None

    async with (
        following_events(kafka) as log,
        running_engine(kafka),
        scripted_worker(kafka, "itest-engine", fail_twice),
    ):
        iid = await start_instance(producer, "flaky", wf)
        await wait_until_async(lambda: "InstanceSucceeded" in log.types(iid), timeout=30)
    assert log.types(iid).count("StepAttemptFailed") == 2
    assert log.types(iid).count("StepAttemptCreated") == 3


async def test_a_new_engine_resumes_from_the_log(kafka: str, producer: AIOKafkaProducer) -> None:
    """State lives only in the event log: a second engine continues where the first stopped."""
    wf = definition(
        "resume",
        [
            {"id": "s", "type": "sleep", "duration": "4s", "next": ["n"]},
            {"id": "n", "type": "noop"},
        ],
    )
    async with following_events(kafka) as log:
        async with running_engine(kafka):
            iid = await start_instance(producer, "resume", wf)
            await wait_until_async(lambda: "StepAttemptStarted" in log.types(iid), timeout=30)
        stopped_at = time.time_ns() // 1000
        async with running_engine(kafka), scripted_worker(kafka, "default", succeed_all):
            await wait_until_async(lambda: "InstanceSucceeded" in log.types(iid), timeout=30)
    events = log.of(iid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    (started,) = [
        e.payload
        for e in events
        if isinstance(e.payload, StepAttemptStarted) and e.payload.step_id == "s"
    ]
    (woke,) = [
        e
        for e in events
        if isinstance(e.payload, StepAttemptSucceeded) and e.payload.step_id == "s"
    ]
    assert started.wake_at is not None
    assert stopped_at < started.wake_at  # the first engine was gone before the timer was due
    assert woke.occurred_at >= started.wake_at  # the second one fired it at the recorded time


async def test_a_new_engine_resumes_at_the_position_recorded_with_the_events(
    kafka: str, producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual transaction records its input position on its last event, not in the group:
    a successor must resume there even though the group's offset trails."""
    monkeypatch.setattr(shard_module, "GROUP_COMMIT_INTERVAL_S", 3600.0)

    async def no_checkpoint(self: shard_module.Shard) -> None:
        return None  # as if the engine died before its clean-stop checkpoint

    monkeypatch.setattr(shard_module.Shard, "checkpoint", no_checkpoint)
    wf = definition("recorded", [{"id": "s", "type": "sleep", "duration": "1h"}])
    iids = []
    async with following_events(kafka) as log:
        async with running_engine(kafka) as first:
            for _ in range(4):  # keys spread over partitions; each lands on one shard
                iids.append(await start_instance(producer, "recorded", wf))
            for iid in iids:
                await wait_until_async(lambda i=iid: "StepAttemptStarted" in log.types(i), 30)
            positions = {p: s.position for p, s in first.shards.items()}
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            group = await admin.list_consumer_group_offsets(GROUP_ID)
        finally:
            await admin.close()

        def group_offset(p: int) -> int:
            committed = group.get(TopicPartition(TOPIC_COMMANDS, p))
            return committed.offset if committed is not None else -1

        trailing = [p for p, pos in positions.items() if pos is not None and group_offset(p) < pos]
        assert trailing, "no partition's group offset trails: the header path was not taken"
        async with running_engine(kafka) as second:
            for p in trailing:
                assert second.shards[p].position == positions[p]
    for iid in iids:  # nothing decided twice
        assert log.types(iid).count("StepAttemptStarted") == 1


async def test_a_transaction_failing_with_any_error_rebuilds_the_shard_and_loses_nothing(
    kafka: str, producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only Kafka errors: a commit that raises anything leaves decisions in memory that
    never reached the log. Deciding on would commit later inputs past them."""
    real_commit = shard_module.Shard.commit
    failed: list[int] = []

    async def flaky(
        self: shard_module.Shard,
        out: Outbox,
        next_offset: int | None,
        capture: Capture | None = None,
    ) -> None:
        if not failed and any(e.type == "StepAttemptSucceeded" for e, _ in out.events):
            failed.append(self.partition)
            raise TimeoutError("a new queue's topic has no leader")  # not a KafkaError
        await real_commit(self, out, next_offset, capture)

    monkeypatch.setattr(shard_module.Shard, "commit", flaky)
    wf = definition("flaky-commit", DIAMOND)
    async with (
        following_events(kafka) as log,
        running_engine(kafka),
        scripted_worker(kafka, "default", succeed_all),
    ):
        iid = await start_instance(producer, "flaky-commit", wf)
        await wait_until_async(lambda: "InstanceSucceeded" in log.types(iid), timeout=60)
    assert failed
    events = log.of(iid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    succeeded = [e.payload.step_id for e in events if isinstance(e.payload, StepAttemptSucceeded)]
    assert sorted(succeeded) == ["a", "b", "c", "d"]


async def test_an_idle_shard_brings_the_group_offset_up_to_its_position(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """Operators watch the group's lag: it must not stay behind once the engine is idle."""
    wf = definition("checkpointed", [{"id": "s", "type": "sleep", "duration": "1h"}])
    async with following_events(kafka) as log, running_engine(kafka) as engine:
        iid = await start_instance(producer, "checkpointed", wf)
        await wait_until_async(lambda: "StepAttemptStarted" in log.types(iid), 30)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:

            async def caught_up() -> bool:
                group = await admin.list_consumer_group_offsets(GROUP_ID)
                for p, shard in engine.shards.items():
                    committed = group.get(TopicPartition(TOPIC_COMMANDS, p))
                    if shard.position is not None and (
                        committed is None or committed.offset != shard.position
                    ):
                        return False
                return True

            await wait_until_async(caught_up, 15)
        finally:
            await admin.close()


async def test_malformed_and_rejected_commands_are_dead_lettered(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    dead = new_consumer(kafka, None, TOPIC_DEADLETTER, auto_offset_reset="latest")
    await dead.start()
    await dead.seek_to_end()
    marker = uuid.uuid4().hex.encode()
    got: list[dict[str, bytes]] = []
    wf = definition("after-garbage", [{"id": "n", "type": "noop"}])
    try:
        async with (
            following_events(kafka) as log,
            running_engine(kafka),
            scripted_worker(kafka, "default", succeed_all),
        ):
            await producer.send_and_wait(TOPIC_COMMANDS, b"garbage", key=marker)
            iid = await start_instance(producer, "after-garbage", wf)
            await wait_until_async(lambda: "InstanceSucceeded" in log.types(iid), timeout=30)

            async def dead_lettered() -> bool:
                batch = await dead.getmany(timeout_ms=200)
                for records in batch.values():
                    got.extend(dict(r.headers) for r in records if r.key == marker)
                return bool(got)

            await wait_until_async(dead_lettered, timeout=10)
    finally:
        await dead.stop()
    assert b"undecodable command" in got[0]["reason"]
    assert got[0]["source_topic"] == TOPIC_COMMANDS.encode()
    assert Codec()  # the codec still decodes after garbage (no shared state corrupted)


async def test_two_engines_share_the_partitions_and_one_takes_over_the_other(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """A consumer group: partitions are split between engines; when one goes away for good,
    the other takes its partitions over once its session expires, and instances finish."""
    wf = definition(
        "shared", [{"id": "a", "type": "noop", "next": ["b"]}, {"id": "b", "type": "noop"}]
    )

    async def all_succeed(log: EventLog, n: int) -> None:
        ids = [await start_instance(producer, "shared", wf) for _ in range(n)]
        try:
            await wait_until_async(
                lambda: all("InstanceSucceeded" in log.types(i) for i in ids), timeout=60
            )
        except AssertionError as err:
            stuck = {i: log.types(i)[-1:] for i in ids if "InstanceSucceeded" not in log.types(i)}
            raise AssertionError(f"{err}: unfinished {stuck}") from None

    async with (
        following_events(kafka) as log,
        scripted_worker(kafka, "default", succeed_all),
        running_engine(kafka, "itest-a") as a,
    ):
        async with running_engine(kafka, "itest-b") as b:

            def split() -> bool:
                owned = a.partitions + b.partitions
                return bool(a.partitions and b.partitions) and sorted(owned) == list(range(8))

            await wait_until_async(split, timeout=60, message="partitions split between a and b")
            await all_succeed(log, 16)
        await wait_until_async(lambda: a.partitions == list(range(8)), timeout=60)
        await all_succeed(log, 16)


async def test_commands_between_partitions_go_out_in_the_transaction_and_arrive_once(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    """An instance whose id does not route with its workflow: its request for admission goes
    to the workflow's partition, and the admission back to the instance's, each in the
    sender's transaction; the workflow queues the second one until the first ends."""
    wid = f"xpart-{uuid.uuid4().hex[:8]}"
    wf = definition(wid, [{"id": "a", "type": "sleep", "duration": "300ms"}])
    ids: list[str] = []
    while len(ids) < 2:  # ids without a route prefix, on partitions other than the workflow's
        candidate = uuid.uuid4().hex
        if partition_for(candidate, PARTITIONS) != partition_for(wid, PARTITIONS):
            ids.append(candidate)
    async with following_events(kafka) as log, running_engine(kafka):
        await push(producer, wid, wf)
        for iid in ids:
            await send_command(
                producer, Codec(), StartInstance(iid, wid, 1, wf, "{}", "itest", None, False)
            )
        await wait_until_async(
            lambda: all("InstanceSucceeded" in log.types(i) for i in ids), timeout=30
        )

        def released() -> int:
            return sum(
                1 for e in log.events if e.workflow_id == wid and e.type == "InstanceReleased"
            )

        await wait_until_async(lambda: released() == 2, timeout=10)
    workflow_types = [e.type for e in log.events if e.workflow_id == wid and e.instance_id is None]
    # SEQUENTIAL: the second start waited in the queue for the first to end.
    assert workflow_types == [
        "WorkflowVersionCreated",
        "WorkflowActivated",
        "InstanceAdmitted",
        "InstanceQueued",
        "InstanceReleased",
        "InstanceAdmitted",
        "InstanceReleased",
    ]
    # The two requests travel from different partitions: either may reach the workflow first.
    admitted = [
        e.payload.instance_id  # type: ignore[union-attr]
        for e in log.events
        if e.workflow_id == wid and e.type == "InstanceAdmitted"
    ]
    assert sorted(admitted) == sorted(ids)
    first, second = (log.of(i) for i in admitted)
    assert first[-1].occurred_at <= second[0].occurred_at
    for events in (first, second):
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.type for e in events].count("InstanceStarted") == 1
