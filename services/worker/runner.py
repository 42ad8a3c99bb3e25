"""The worker loop: task records in, step runtimes run, result commands out.

Delivery is at-least-once. A task's offset is committed only after its result report is
acknowledged by Kafka, and a partition's committed offset never passes a task that has not
finished, so a crash at any instant re-delivers every task whose result was not yet
reported (the engine ignores duplicate reports of an attempt).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.adapters.avro import Codec, DecodeError
from services.adapters.kafka import TOPIC_DEADLETTER, dead_letter_headers, task_topic
from services.adapters.logs import kafka_loss
from services.adapters.publish import envelope, send_command, send_envelopes
from services.domain.kernel.documents import json_may_hold_unstorable
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.commands import (
    Command,
    CommandEnvelope,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
)
from services.domain.protocol.tasks import Task
from services.worker.offsets import PartitionOffsets
from services.worker.runtimes.contract import (
    StepOutcome,
    StepRuntime,
    StepSuccess,
    failure,
    reportable,
)
from services.worker.runtimes.registry import runtime_for

log = logging.getLogger(__name__)

# How long one fetch waits for records; also how quickly the loop notices a stop.
_POLL_MS = 100
# While every slot is busy the loop still polls (paused) this often, so the consumer group
# does not take a worker running long steps for a dead one (max_poll_interval_ms).
_KEEPALIVE_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 5.0
MAX_OUTPUTS_BYTES = 256 * 1024
# How long a step runs before its start is reported on its own (see _run_with_heartbeats).
REPORT_STARTED_AFTER_SECONDS = 0.005


class _GaveUp(Exception):
    """A send abandoned because the worker is stopping; the task is left to be re-run."""


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


AttemptKey = tuple[str, str, int]
# Attempts cancelled by the engine, remembered so a task fetched after its cancellation is
# not started at all. Bounded: only recent ones matter.
_CANCELLED_MEMORY = 10_000


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
        self._running: dict[AttemptKey, asyncio.Future[StepOutcome]] = {}
        self._cancelled: OrderedDict[AttemptKey, None] = OrderedDict()
        self._in_flight: set[tuple[TopicPartition, int]] = set()
        self._producer = producer
        self._codec = codec
        self._runtimes = runtimes
        self._options = options
        self._topic = task_topic(options.queue)
        self._slots = asyncio.Semaphore(options.concurrency)
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None

    def stop(self) -> None:
        """Stop fetching; running steps get the grace period to finish. Safe from a signal handler."""
        self._stopping.set()

    @property
    def running(self) -> int:
        """Tasks fetched and not yet finished (running or waiting for a slot)."""
        return len(self._handlers)

    async def run(self) -> None:
        self._consumer.subscribe([self._topic], listener=_Rebalance(self))
        committer = asyncio.ensure_future(self._commit_loop())
        background = {committer}
        if self._control is not None:
            background.add(asyncio.ensure_future(self._control_loop(self._control)))
        try:
            await self._fetch_loop()
            await self._drain()
        finally:
            # Normally none are left; if run() itself was cancelled, end their steps too.
            leftover = {*self._handlers, *background}
            for handler in leftover:
                handler.cancel()
            await asyncio.wait(leftover)
            await self._commit()
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
        offsets = self._offsets.get(tp)
        if offsets is None:
            offsets = self._offsets[tp] = PartitionOffsets()
        offsets.start(record.offset)
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

    # -- cancellation -----------------------------------------------------------------------

    async def _control_loop(self, control: AIOKafkaConsumer) -> None:
        async for record in control:
            try:
                event = self._codec.decode_event(record.value or b"")
            except DecodeError as err:
                log.warning("undecodable control record at offset %d: %s", record.offset, err)
                continue
            step_id = getattr(event.payload, "step_id", None)
            attempt = getattr(event.payload, "attempt", None)
            if event.instance_id and isinstance(step_id, str) and isinstance(attempt, int):
                self.cancel((event.instance_id, step_id, attempt), event.type)

    def cancel(self, key: AttemptKey, why: str) -> None:
        """Kill the attempt if it runs here, and never start it if it arrives later."""
        self._cancelled[key] = None
        while len(self._cancelled) > _CANCELLED_MEMORY:
            self._cancelled.popitem(last=False)
        step = self._running.get(key)
        if step is not None and not step.done():
            log.info("cancelling %s:%s:%d (%s)", *key, why)
            step.cancel()  # the runtime kills the step's processes

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
        except _GaveUp as err:
            # Stopping with Kafka unreachable: leave the offset uncommitted; it is re-run.
            log.warning(
                "task at %s[%d]@%d abandoned: %s",
                record.topic,
                record.partition,
                record.offset,
                err,
            )
            return
        # The tracker that owns tp now (a rebalance may have replaced it, or taken tp away).
        offsets = self._offsets.get(tp)
        if offsets is not None and offsets.finish(record.offset):
            self._commit_wanted.set()

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            if record.value is None:
                raise DecodeError("empty record (no value)")
            task = self._codec.decode_task(record.value)
        except DecodeError as err:
            await self._dead_letter(record, str(err))
            return
        if (task.instance_id, task.step_id, task.attempt) in self._cancelled:
            log.info("task %s was cancelled before it started; skipped", task.task_id)
            return
        runtime = runtime_for(self._runtimes, task.step_type)
        worker_id = self._options.worker_id
        # Stamped now, when the attempt starts here; sent once the step has run for a moment
        # (see _run_with_heartbeats) or together with its result.
        started = envelope(
            ReportAttemptStarted(task.instance_id, task.step_id, task.attempt, worker_id)
        )
        run = await self._run_with_heartbeats(runtime, task, started)
        if run is None:
            log.info("task %s cancelled by the engine; not reported", task.task_id)
            return
        outcome, started_sent = run
        if isinstance(outcome, StepSuccess):
            try:
                outputs = _outputs_json(outcome)
            except (TypeError, ValueError) as err:
                outcome = failure(FailureKind.USER, f"outputs are not valid JSON: {err}")
            else:
                if len(outputs.encode()) > MAX_OUTPUTS_BYTES:
                    # They travel in a command and an event: bounded, like every record.
                    outcome = failure(
                        FailureKind.USER,
                        f"outputs are {len(outputs.encode())} bytes; at most {MAX_OUTPUTS_BYTES}",
                    )
                elif json_may_hold_unstorable(outputs):
                    # Found in the JSON by a substring search (2 µs); `reportable` walks the
                    # outputs (2 ms for 8,000 values) only to name the path.
                    outcome = reportable(outcome)
        if isinstance(outcome, StepSuccess):
            report: Command = ReportAttemptSucceeded(
                task.instance_id, task.step_id, task.attempt, outputs
            )
        else:
            bounded = failure(outcome.kind, outcome.message, outcome.output_tail)  # storable too
            report = ReportAttemptFailed(
                task.instance_id,
                task.step_id,
                task.attempt,
                bounded.kind,
                bounded.message,
                bounded.output_tail,
            )
        await self._send(*([] if started_sent else [started]), envelope(report))

    async def _run_with_heartbeats(
        self, runtime: StepRuntime, task: Task, started: CommandEnvelope
    ) -> tuple[StepOutcome, bool] | None:
        """The step's outcome and whether `started` was sent, or None when the engine
        cancelled it (see `cancel`).

        A step that ends within REPORT_STARTED_AFTER_SECONDS reports its start together with
        its result: one produce request, one engine transaction, instead of a Started
        transaction the result would queue behind. Longer steps report their start then."""
        key = (task.instance_id, task.step_id, task.attempt)
        if key in self._cancelled:  # cancelled before it started
            return None
        step = asyncio.ensure_future(runtime.run(task))
        self._running[key] = step
        started_sent = False
        try:
            done, _ = await asyncio.wait((step,), timeout=REPORT_STARTED_AFTER_SECONDS)
            if not done:
                await self._send(started)
                started_sent = True
            while not done:
                done, _ = await asyncio.wait((step,), timeout=self._options.heartbeat_seconds)
                if not done:
                    await self._heartbeat(task)
        finally:
            self._running.pop(key, None)
            if not step.done():
                step.cancel()  # the runtime kills the step's processes
                await asyncio.wait((step,))
        if step.cancelled() and key in self._cancelled:
            return None
        try:
            return step.result(), started_sent
        except Exception as err:
            log.exception("runtime %s failed on task %s", type(runtime).__name__, task.task_id)
            # The report is kept in baton.events for ever and served by the API, and an
            # exception's message or traceback can hold what the runtime was handed (a DSN,
            # a header): the event names the type and the worker; its log has the rest.
            return (
                failure(
                    FailureKind.PLATFORM,
                    f"worker error: {type(err).__name__} (its traceback is in the log of"
                    f" worker {self._options.worker_id})",
                ),
                started_sent,
            )

    async def _heartbeat(self, task: Task) -> None:
        hb = ReportAttemptHeartbeat(
            task.instance_id, task.step_id, task.attempt, self._options.worker_id
        )
        try:
            await send_command(self._producer, self._codec, hb)
        except KafkaError as err:
            # One missed heartbeat is harmless; the next one may get through.
            log.warning("heartbeat for %s not sent: %r", task.task_id, err, extra=kafka_loss(err))

    async def _send(self, *envelopes: CommandEnvelope) -> None:
        """Reports, in order, in one produce request. A retry after a partial failure sends
        some again: the engine ignores a report it has already decided."""

        async def send() -> None:
            await send_envelopes(self._producer, self._codec, list(envelopes))

        what = " + ".join(type(e.payload).__name__ for e in envelopes)
        await _retrying(f"report {what}", self._stopping, send)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.warning(
            "malformed task at %s[%d]@%d sent to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            TOPIC_DEADLETTER,
            reason,
        )
        headers = dead_letter_headers(record, reason)

        async def send() -> None:
            await self._producer.send_and_wait(
                TOPIC_DEADLETTER, record.value, key=record.key, headers=headers
            )

        await _retrying("dead-letter", self._stopping, send)

    # -- offsets ----------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        # One commit covers every partition that moved since the last one, so commits
        # coalesce under load instead of costing a round trip per task.
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self._commit()

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        assigned = self._consumer.assignment() if partitions is None else partitions
        due = {}
        for tp in assigned:
            offsets = self._offsets.get(tp)
            if offsets is None:
                continue
            position = offsets.committable()
            if position > offsets.committed:
                due[tp] = (offsets, position)
        if not due:
            return
        try:
            await self._consumer.commit({tp: position for tp, (_, position) in due.items()})
        except (CommitFailedError, IllegalStateError) as err:
            # Lost the partitions in a rebalance: their new owner re-runs what we did not commit.
            log.warning("offset commit failed: %r", err)
            return
        except KafkaError as err:
            log.warning(
                "offset commit failed, will retry with the next one: %r", err, extra=kafka_loss(err)
            )
            return
        for offsets, position in due.values():
            offsets.committed = max(offsets.committed, position)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._commit(revoked & self._consumer.assignment())
        # Tasks of these partitions still running will report (harmlessly, if also re-run by
        # the partition's next owner), but no longer move any offset.
        for tp in revoked:
            self._offsets.pop(tp, None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


def _outputs_json(outcome: StepSuccess) -> str:
    return json.dumps(outcome.outputs, sort_keys=True, separators=(",", ":"), allow_nan=False)


async def _retrying(
    what: str, stopping: asyncio.Event, attempt: Callable[[], Awaitable[None]]
) -> None:
    """Retry a send through Kafka outages: a result lost here would be re-run, not lost, but
    re-running a long step is costly. Gives up only when the worker is stopping."""
    delay = 0.1
    while True:
        try:
            await attempt()
            return
        except KafkaError as err:
            if stopping.is_set():
                raise _GaveUp(f"{what} failed while stopping: {err!r}") from err
            log.warning("%s failed, retrying in %.1fs: %r", what, delay, err, extra=kafka_loss(err))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_SECONDS)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
