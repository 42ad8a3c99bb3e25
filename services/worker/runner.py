"""The worker loop: task records in, step runtimes run, result commands out.

Delivery is at-least-once. A task's offset is committed only after its result report is
acknowledged by Kafka, and a partition's committed offset never passes a task that has not
finished, so a crash at any instant re-delivers every task whose result was not yet
reported (the engine ignores duplicate reports of an attempt).

This module consumes and dispatches; attempt.py runs one attempt and builds its report,
reports.py sends it, cancellations.py follows the engine's cancellations and offsets.py
commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from services.adapters.avro import Codec, DecodeError
from services.adapters.kafka import task_topic
from services.adapters.publish import envelope
from services.domain.protocol.commands import ReportAttemptStarted
from services.worker.attempt import report_for, run_attempt
from services.worker.cancellations import AttemptKey, Cancellations
from services.worker.offsets import CommitOnRevoke, OffsetCommits
from services.worker.reports import GaveUp, Reporter
from services.worker.runtimes.contract import StepRuntime
from services.worker.runtimes.registry import runtime_for

log = logging.getLogger(__name__)

# How long one fetch waits for records; also how quickly the loop notices a stop.
_POLL_MS = 100
# While every slot is busy the loop still polls (paused) this often, so the consumer group
# does not take a worker running long steps for a dead one (max_poll_interval_ms).
_KEEPALIVE_SECONDS = 1.0


def group_id(queue: str) -> str:
    return f"baton-worker-{queue}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    queue: str
    worker_id: str
    concurrency: int = 8
    heartbeat_seconds: float = 5.0
    # On SIGTERM: how long running steps may go on before they are killed (not reported).
    shutdown_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.heartbeat_seconds <= 0:
            raise ValueError(f"heartbeat_seconds must be > 0, got {self.heartbeat_seconds}")


class Worker:
    """Consumes ``task_topic(queue)`` in group ``baton-worker-<queue>`` and runs its tasks.

    With a ``control`` consumer (assigned to ``TOPIC_CONTROL``), an attempt the engine ends
    without the worker (a stop, its timeout, a lost heartbeat) has its processes killed; it
    is not reported (the engine already decided its end) and its offset is committed.

    The caller owns the clients: it starts the consumer (unsubscribed; ``run`` subscribes)
    and the producer before ``run`` and stops them after. ``stop()`` begins a graceful
    shutdown; ``run`` returns when it is complete.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        codec: Codec,
        runtimes: Mapping[str, StepRuntime],
        options: WorkerOptions,
        control: AIOKafkaConsumer | None = None,
    ) -> None:
        self._consumer = consumer
        self._control = control
        self._codec = codec
        self._runtimes = runtimes
        self._options = options
        self._topic = task_topic(options.queue)
        self._stopping = asyncio.Event()
        self._reporter = Reporter(producer, codec, options.worker_id, self._stopping)
        self._cancellations = Cancellations()
        self._commits = OffsetCommits(consumer)
        self._in_flight: set[tuple[TopicPartition, int]] = set()
        self._slots = asyncio.Semaphore(options.concurrency)
        self._handlers: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._fatal: BaseException | None = None

    def stop(self) -> None:
        """Stop fetching; running steps get the grace period to finish. Safe from a signal handler."""
        self._stopping.set()

    @property
    def running(self) -> int:
        """Tasks fetched and not yet finished (running or waiting for a slot)."""
        return len(self._handlers)

    def cancel(self, key: AttemptKey, why: str) -> None:
        """Kill the attempt if it runs here, and never start it if it arrives later."""
        self._cancellations.cancel(key, why)

    async def run(self) -> None:
        self._consumer.subscribe([self._topic], listener=CommitOnRevoke(self._commits))
        committer = asyncio.ensure_future(self._commits.commit_loop())
        background = {committer}
        if self._control is not None:
            follower = self._cancellations.follow(self._control, self._codec)
            background.add(asyncio.ensure_future(follower))
        try:
            await self._fetch_loop()
            await self._drain()
        finally:
            # Normally none are left; if run() itself was cancelled, end their steps too.
            leftover = {*self._handlers, *background}
            for handler in leftover:
                handler.cancel()
            await asyncio.wait(leftover)
            await self._commits.commit()
        if self._fatal is not None:
            raise self._fatal

    # -- fetching ---------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        while not self._stopping.is_set():
            free = self._options.concurrency - len(self._handlers)
            if free <= 0:
                consumer.pause(*consumer.assignment())
                self._slot_freed.clear()
                await _wait_any(self._slot_freed, self._stopping, timeout=_KEEPALIVE_SECONDS)
                # Paused partitions return nothing, except ones assigned by a rebalance in
                # this very call; their tasks wait for a slot.
                batches = await consumer.getmany(timeout_ms=0)
            else:
                paused = consumer.paused()
                if paused:
                    consumer.resume(*paused)
                batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=free)
            for tp, records in batches.items():
                for record in records:
                    self._dispatch(tp, record)

    def _dispatch(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._commits.start(tp, record.offset)
        if (tp, record.offset) in self._in_flight:
            # Still running here from before a rebalance that gave tp back to us: eager
            # rebalancing re-delivers from the committed offset. Do not run it twice; the
            # running copy finishes this offset when it ends.
            return
        self._in_flight.add((tp, record.offset))
        handler = asyncio.ensure_future(self._handle(tp, record))
        self._handlers.add(handler)
        handler.add_done_callback(self._handler_done)

    def _handler_done(self, handler: asyncio.Task[None]) -> None:
        self._handlers.discard(handler)
        self._slot_freed.set()
        if handler.cancelled():
            return
        err = handler.exception()
        if err is not None and self._fatal is None:
            log.error("worker stops: a task could not be handled", exc_info=err)
            self._fatal = err
            self.stop()

    async def _drain(self) -> None:
        """Let running tasks finish within the grace period, then kill them unreported."""
        self._consumer.pause(*self._consumer.assignment())
        if not self._handlers:
            return
        log.info(
            "stopping: waiting up to %gs for %d running task(s)",
            self._options.shutdown_grace_seconds,
            len(self._handlers),
        )
        _, late = await asyncio.wait(
            set(self._handlers), timeout=self._options.shutdown_grace_seconds
        )
        if late:
            log.warning(
                "stopping: killing %d task(s) still running; the engine will retry them",
                len(late),
            )
            for handler in late:
                handler.cancel()
            await asyncio.wait(late)

    # -- one task ---------------------------------------------------------------------------

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            await self._handle_one(tp, record)
        finally:
            self._in_flight.discard((tp, record.offset))

    async def _handle_one(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            async with self._slots:
                await self._process(record)
        except GaveUp as err:
            # Stopping with Kafka unreachable: leave the offset uncommitted; it is re-run.
            log.warning(
                "task at %s[%d]@%d abandoned: %s",
                record.topic,
                record.partition,
                record.offset,
                err,
            )
            return
        self._commits.finish(tp, record.offset)

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            if record.value is None:
                raise DecodeError("empty record (no value)")
            task = self._codec.decode_task(record.value)
        except DecodeError as err:
            await self._reporter.dead_letter(record, str(err))
            return
        if (task.instance_id, task.step_id, task.attempt) in self._cancellations:
            log.info("task %s was cancelled before it started; skipped", task.task_id)
            return
        worker_id = self._options.worker_id
        # Stamped now, when the attempt starts here; sent once the step has run for a moment
        # (see run_attempt) or together with its result.
        started = envelope(
            ReportAttemptStarted(task.instance_id, task.step_id, task.attempt, worker_id)
        )
        run = await run_attempt(
            runtime_for(self._runtimes, task.step_type),
            task,
            started,
            reporter=self._reporter,
            cancellations=self._cancellations,
            heartbeat_seconds=self._options.heartbeat_seconds,
            worker_id=worker_id,
        )
        if run is None:
            log.info("task %s cancelled by the engine; not reported", task.task_id)
            return
        outcome, started_sent = run
        report = envelope(report_for(task, outcome))
        await self._reporter.send(*([] if started_sent else [started]), report)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
