"""The engine process: a member of consumer group `baton-engine` over the commands topic.

Kafka assigns partitions; for each partition p this process gains, it pauses commands
partition p and recovers p in a task of its own: it opens p's transactional producer
(`baton-engine-p<p>`) — which aborts any transaction the previous owner left open and fences
that owner for good — then folds events partition p, then seeks commands partition p to the
offset committed by the last successful transaction and resumes it. Only then does it decide
p's commands; the partitions already recovered decide meanwhile, and the rebalance callback
returns at once, so a long fold neither holds the group up nor keeps the loop from
heartbeating or stopping. Correctness never depends on group timing: whoever holds p's
transactional id is the only one who can commit p's outputs and offsets.

Membership is static (`group.instance.id` = the engine id), so an engine restarted after a
crash rejoins at once and gets its partitions back without a rebalance; a member that stays
away longer than the session timeout has its partitions moved to the other engines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)

from services.adapters.avro import Codec
from services.adapters.kafka import (
    TOPIC_COMMANDS,
    ensure_topics,
    new_admin,
    new_consumer,
    new_transactional_producer,
    task_topic,
)
from services.engine.outbox import Outbox
from services.engine.shard import Shard, now_micros
from services.engine.stats import LoopStats

log = logging.getLogger(__name__)

GROUP_ID = "baton-engine"
IDLE_POLL_MS = 100
# Under sustained load only, how long a shard's committer waits to gather a larger transaction.
TRANSACTION_LINGER_S = 0.005  # the default of BATON_TRANSACTION_LINGER_MS (EngineSettings)
# A shard's decided-but-uncommitted records beyond which deciding waits for its transaction.
MAX_PENDING_RECORDS = 20_000
SESSION_TIMEOUT_MS = 10_000
# How long a stop lets the transactions in flight finish before it aborts them (their inputs
# are decided again by the next owner): a broker that stopped answering must not keep an
# engine from stopping.
STOP_FLUSH_TIMEOUT_S = 5.0
REBALANCE_TIMEOUT_MS = 120_000


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Let every decided batch commit (or fail) before the group moves partitions, so a
        # new owner never fences a transaction we are about to finish. Eager rebalancing
        # revokes everything before every assignment; shards that come back are kept (see
        # on_partitions_assigned), so nothing is dropped here.
        async with self.engine._lock:
            await self.engine._flush()
            await self.engine._checkpoint_all()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.engine._assigned({tp.partition for tp in assigned})


class Engine:
    def __init__(
        self,
        bootstrap: str,
        partition_count: int,
        codec: Codec,
        engine_id: str = "engine-1",
        heartbeat_timeout_s: float = 30.0,
        max_batch: int = 2000,
        transaction_linger_s: float = TRANSACTION_LINGER_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.partition_count = partition_count
        self.codec = codec
        self.engine_id = engine_id
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.max_batch = max_batch
        self.transaction_linger_s = transaction_linger_s
        self.shards: dict[int, Shard] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self._queues: dict[str, asyncio.Future[None]] = {}
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._failures: dict[int, int] = {}
        # Partitions whose shard was dropped after being fenced, and when.
        self._dropped_at: dict[int, float] = {}
        # Held while deciding a batch and while partitions change hands.
        self._lock = asyncio.Lock()
        # Bumped on every assignment: a batch fetched across one is dropped and re-read
        # from the committed offsets.
        self._generation = 0
        self.stats = LoopStats()
        # Shards waiting to be rebuilt after a failed transaction, and when to do it.
        self._reopen_at: dict[int, float] = {}
        # Partitions being recovered (opened and folded) in the background; their commands
        # partitions are paused until the shard is in place.
        self._recovering: dict[int, asyncio.Task[None]] = {}

    @property
    def partitions(self) -> list[int]:
        return sorted(self.shards)

    async def _ensure_queue(self, queue: str) -> None:
        """Until the queue's task topic exists with leaders: created once, however many shards
        ask at the same moment (a failure is tried again by the next one to ask)."""
        ready = self._queues.get(queue)
        if ready is None:
            ready = self._queues[queue] = asyncio.ensure_future(self._create_queue(queue))
        try:
            # One shard's cancellation must not cancel the creation the others wait for.
            await asyncio.shield(ready)
        except Exception:
            if self._queues.get(queue) is ready:
                del self._queues[queue]
            raise

    async def _create_queue(self, queue: str) -> None:
        await ensure_topics(self.bootstrap, self.partition_count, [queue])
        log.info("task topic %s ready", task_topic(queue))

    async def _open_shard(self, p: int) -> Shard:
        producer = new_transactional_producer(self.bootstrap, f"baton-engine-p{p}")
        shard = Shard(
            p,
            producer,
            self.codec,
            GROUP_ID,
            self.heartbeat_timeout_s,
            self._ensure_queue,
            self.partition_count,
        )
        t0 = now_micros()
        try:
            await producer.start()  # init_transactions: fences the previous owner of p
            count = await shard.load(self.bootstrap, now_micros())
            await self._fetch_committed(shard)
        except BaseException:
            await producer.stop()  # failed or cancelled (a stop, a revocation): not leaked
            raise
        log.info(
            "p%d: folded %d events into %d instances in %.0f ms",
            p,
            count,
            len(shard.instances),
            (now_micros() - t0) / 1000,
        )
        return shard

    async def _fetch_committed(self, shard: Shard) -> None:
        # Asked of the group coordinator after the producer was opened: by then the previous
        # owner's last transaction is either committed (its offsets visible) or aborted.
        assert self.admin is not None
        offsets = await self.admin.list_consumer_group_offsets(
            GROUP_ID, partitions=[shard.commands_tp]
        )
        committed = offsets.get(shard.commands_tp)
        group = committed.offset if committed and committed.offset >= 0 else None
        shard.group_position = group
        # Both were written by committed transactions; the later one is the position.
        known = [o for o in (group, shard.logged_position) if o is not None]
        shard.position = max(known) if known else None
        shard.decided_to = shard.position

    async def _seek(self, shard: Shard) -> None:
        assert self.consumer is not None
        if shard.position is None:
            await self.consumer.seek_to_beginning(shard.commands_tp)
        else:
            self.consumer.seek(shard.commands_tp, shard.position)

    async def _assigned(self, partitions: set[int]) -> None:
        try:
            await self._take(partitions)
        except Exception as err:
            # aiokafka would only log this and keep the partitions assigned to us, unowned
            # and silent. Stop instead: a restart (or another engine) takes them over.
            log.critical("engine %s could not take partitions %s", self.engine_id, partitions)
            self._fatal = err
            self.stop()

    async def _take(self, partitions: set[int]) -> None:
        """The new assignment: shards kept are re-sought, the others dropped, and the new
        ones recovered in the background (see _recover). Returns without folding anything."""
        assert self.consumer is not None
        async with self._lock:
            await self._flush()
            self._generation += 1
            for p in sorted(set(self.shards) - partitions):
                await self.shards.pop(p).producer.stop()
                self._reopen_at.pop(p, None)
            for p in sorted(set(self._recovering) - partitions):
                await self._cancel_recovery(p)
            for shard in self.shards.values():
                await self._seek(shard)
            for p in sorted(partitions - set(self.shards)):
                # Also those still recovering from an earlier assignment: a new assignment
                # forgets which partitions were paused.
                self.consumer.pause(TopicPartition(TOPIC_COMMANDS, p))
                if p not in self._recovering:
                    self._recover_in_background(p, fatal=True)
            log.info(
                "engine %s owns partitions %s; recovering %s",
                self.engine_id,
                self.partitions,
                sorted(self._recovering),
            )

    def _recover_in_background(self, p: int, fatal: bool) -> None:
        """Pause commands partition p (the caller holds the lock) and recover p in a task."""
        assert self.consumer is not None
        self.consumer.pause(TopicPartition(TOPIC_COMMANDS, p))
        self._recovering[p] = asyncio.create_task(self._recover(p, fatal), name=f"recover-p{p}")

    async def _recover(self, p: int, fatal: bool) -> None:
        """Open and fold shard p, then put it in place (replacing a broken one), seek its
        commands partition and resume it. Other partitions decide meanwhile: the fold yields
        to the loop, and nothing of p is decided until it is in place.

        A failure is fatal for a partition just assigned (as when taking partitions was one
        step: a restart or another engine takes it over); a rebuild that fails leaves the
        broken shard in place, to be tried again after a back-off (see _tend_failed)."""
        assert self.consumer is not None
        try:
            shard = await self._open_shard(p)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            async with self._lock:
                if self._recovering.get(p) is asyncio.current_task():
                    del self._recovering[p]
                old = self.shards.get(p)
                if not fatal:
                    if old is not None:
                        old.failed = err  # tried again after a longer back-off
                    return
            log.critical("engine %s could not take partition %d", self.engine_id, p)
            self._fatal = err
            self.stop()
            return
        try:
            async with self._lock:
                if self._recovering.get(p) is not asyncio.current_task():
                    await shard.producer.stop()  # superseded meanwhile
                    return
                del self._recovering[p]
                old = self.shards.get(p)
                self.shards[p] = shard
                if old is not None:
                    await old.producer.stop()
                await self._seek(shard)
                self.consumer.resume(shard.commands_tp)
        except asyncio.CancelledError:
            if self.shards.get(p) is not shard:
                await shard.producer.stop()
            raise

    async def _cancel_recovery(self, p: int) -> None:
        task = self._recovering.pop(p)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def start(self) -> None:
        self.consumer = new_consumer(
            self.bootstrap,
            GROUP_ID,
            max_poll_records=self.max_batch,
            fetch_max_wait_ms=5,
            group_instance_id=self.engine_id,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            # A revocation lets every decided batch commit first; give it time.
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        )
        await self.consumer.start()
        self.admin = new_admin(self.bootstrap)
        await self.admin.start()
        self.consumer.subscribe([TOPIC_COMMANDS], listener=_Rebalance(self))

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until this engine owns at least one partition and recovers none (tests and
        start-up logs)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.shards or self._recovering:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no partitions assigned")
            await asyncio.sleep(0.05)

    def _poll_timeout_ms(self) -> int:
        # A broken shard's overdue timers wait for its rebuild: counting them would make the
        # loop spin through the whole back-off.
        dues = [
            d
            for d in (s.next_due() for s in self.shards.values() if not s.broken())
            if d is not None
        ]
        wait_ms = IDLE_POLL_MS if not dues else (min(dues) - now_micros()) // 1000
        if self._reopen_at:
            loop_now = asyncio.get_running_loop().time()
            wait_ms = min(wait_ms, int((min(self._reopen_at.values()) - loop_now) * 1000))
        return int(max(0, min(IDLE_POLL_MS, wait_ms)))

    async def run(self) -> None:
        """Fetch, decide, hand the decisions to each shard's committer, fetch again.

        Deciding does not wait for committing: while a shard's transaction is in flight, what
        the next batches decide for it accumulates (memory already reflects it) and goes out
        in its next transaction, together. Under load that is group commit, with transactions
        as large as the broker's round trips make them; at rest a command is decided and
        committed at once, as before."""
        assert self.consumer is not None
        consumer = self.consumer
        stats = self.stats
        try:
            while not self._stopping.is_set():
                generation = self._generation
                owners = dict(self.shards)
                t0 = time.monotonic()
                batch = await consumer.getmany(timeout_ms=self._poll_timeout_ms())
                stats.fetch.add(time.monotonic() - t0)
                stats.loops += 1
                stats.maybe_log()
                async with self._lock:
                    await self._tend_failed()
                    await self._revive_orphans()
                    if generation != self._generation:
                        # Fetched across a rebalance: some of it may come from before the
                        # seeks and the consumer has moved past all of it. Drop it and read
                        # again from each shard's own position.
                        await self._flush()
                        for shard in self.shards.values():
                            await self._seek(shard)
                        continue
                    await self._decide(batch, owners)
                    self._checkpoint_idle()
            async with self._lock:
                try:
                    await asyncio.wait_for(self._flush_and_checkpoint(), STOP_FLUSH_TIMEOUT_S)
                except TimeoutError:
                    log.warning(
                        "transactions still in flight %.0f s after the stop; aborting them",
                        STOP_FLUSH_TIMEOUT_S,
                    )
        finally:
            # A stop during a fold: it commits nothing, so it is simply abandoned.
            for p in list(self._recovering):
                await self._cancel_recovery(p)
            committers = [
                s.committer
                for s in self.shards.values()
                if s.committer is not None and not s.committer.done()
            ]
            for committer in committers:
                committer.cancel()
            # Let each abort its transaction before close() stops the producers.
            await asyncio.gather(*committers, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal

    async def _decide(
        self, batch: dict[TopicPartition, list[Any]], owners: dict[int, Shard]
    ) -> None:
        assert self.consumer is not None
        now = now_micros()
        t0 = time.monotonic()
        for p, shard in list(self.shards.items()):
            if shard.broken():
                continue  # its input is read again once it is rebuilt
            if shard.commands_tp not in self.consumer.assignment():
                continue  # revoked; the rebalance callbacks are about to take it
            records = batch.get(shard.commands_tp, [])
            if shard.decided_to is not None and records and records[0].offset < shard.decided_to:
                # Already decided (a position reset we did not ask for): deciding again could
                # repeat a transition. Recovery re-seeks explicitly, to a new shard.
                records = [r for r in records if r.offset >= shard.decided_to]
            if owners.get(p) is not shard:
                # Put in place (recovered or rebuilt, and sought) while this batch was being
                # fetched: its records for p may predate that seek, and the consumer has moved
                # past them. Read them again from the shard's position.
                records = []
                await self._seek(shard)
            if shard.pending is not None and len(shard.pending) >= MAX_PENDING_RECORDS:
                # The broker is slower than the input: wait for the transaction in flight
                # rather than let one grow without bound.
                await self._settle(shard)
                if shard.broken():
                    continue
            # Shards write commands for each other in transactions: read_committed reads up to
            # the last stable offset (the first open transaction), and the commit markers
            # between records are skipped. Input is waiting when the position is below it.
            stable = self.consumer.last_stable_offset(shard.commands_tp)
            if stable is None or stable < 0:
                stable = self.consumer.highwater(shard.commands_tp)
            position = await self.consumer.position(shard.commands_tp)
            lagging = stable is not None and stable > position
            out = shard.decide_batch(records, now, lagging)
            self.stats.commands += len(records)
            next_offset = records[-1].offset + 1 if records else None
            if next_offset is not None:
                shard.decided_to = next_offset
            if out or next_offset is not None:
                self._enqueue(shard, out, next_offset)
        self.stats.decide.add(time.monotonic() - t0)

    def _enqueue(self, shard: Shard, out: Outbox, next_offset: int | None) -> None:
        if shard.pending is None:
            shard.pending = out
        else:
            shard.pending.extend(out)
        if next_offset is not None:
            shard.pending_offset = next_offset
        if shard.committer is None or shard.committer.done():
            shard.committer = asyncio.create_task(self._commit_pending(shard))

    async def _commit_pending(self, shard: Shard) -> None:
        """The shard's committer: one transaction at a time, each taking everything decided
        since the last one began. Stops at the first failure (see _tend_failed)."""
        backlog = False
        while shard.failed is None and (
            shard.pending is not None or shard.pending_offset is not None
        ):
            if backlog and self.transaction_linger_s > 0:
                # Input kept arriving while the last transaction was in flight: the shard is
                # under sustained load. A moment more gathers a larger transaction, and the
                # broker's cost is per transaction. A lone command never waits here.
                await asyncio.sleep(self.transaction_linger_s)
            out, next_offset = shard.pending or Outbox(), shard.pending_offset
            shard.pending, shard.pending_offset = None, None
            t0 = time.monotonic()
            try:
                await shard.commit(out, next_offset)
            except BaseException as err:
                # Any failure (a Kafka error, a topic that never got a leader, aiokafka's own
                # state checks, cancellation): memory already holds what failed to commit and
                # whatever was decided on top of it, and the inputs are behind the consumer's
                # position. Only a rebuild from the log is safe; the loop tends to it at its
                # next turn (within IDLE_POLL_MS). Deciding on would commit later inputs past
                # these and lose them.
                shard.failed = err
                shard.pending, shard.pending_offset = None, None
                if isinstance(err, Exception):
                    return
                raise
            self.stats.transactions += 1
            self.stats.commit.add(time.monotonic() - t0)
            self._failures.pop(shard.partition, None)
            backlog = shard.pending is not None

    def _checkpoint_idle(self) -> None:
        """Idle shards whose group offset trails get a checkpoint (see Shard.commit)."""
        clock = time.monotonic()
        for shard in self.shards.values():
            busy = shard.committer is not None and not shard.committer.done()
            if not busy and not shard.broken() and shard.checkpoint_due(clock):
                shard.committer = asyncio.create_task(self._checkpoint(shard))

    async def _checkpoint(self, shard: Shard) -> None:
        try:
            await shard.checkpoint()
        except BaseException as err:
            shard.failed = err  # as in _commit_pending
            if isinstance(err, Exception):
                return
            raise
        # Decisions enqueued meanwhile found this task running and left it to commit them.
        await self._commit_pending(shard)

    async def _checkpoint_all(self) -> None:
        """Every shard's group offset up to its position: before partitions move and on a
        clean stop, so whoever reads the group next (any version) starts exactly there.
        Call after _flush, under the lock."""

        async def one(shard: Shard) -> None:
            try:
                await shard.checkpoint()
            except Exception:
                # The position is in the events' headers anyway; only the group trails.
                log.warning("p%d: checkpoint failed", shard.partition, exc_info=True)

        await asyncio.gather(*(one(s) for s in self.shards.values() if not s.broken()))

    async def _flush_and_checkpoint(self) -> None:
        await self._flush()
        await self._checkpoint_all()

    async def _settle(self, shard: Shard) -> None:
        """Until everything decided for the shard is committed, or its transaction failed."""
        while shard.committer is not None and not shard.committer.done():
            await asyncio.wait((shard.committer,))

    async def _flush(self) -> None:
        """Until every shard's decided batches are committed (or failed). Committers never
        take the lock, so this may be awaited while holding it."""
        for shard in list(self.shards.values()):
            await self._settle(shard)

    async def _tend_failed(self) -> None:
        """Shards whose transaction failed: drop the fenced ones, rebuild the others from the
        log (with a back-off while it keeps failing). Under the lock."""
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        for p, shard in list(self.shards.items()):
            err = shard.failed
            if err is None or p in self._recovering:
                continue
            if _fenced(err) or shard.commands_tp not in self.consumer.assignment():
                # Another engine opened p's producer: it owns p now. Reopening here would
                # fence it back; the group will tell us (see _revive_orphans).
                log.warning("p%d: fenced or no longer ours; shard dropped", p)
                await self.shards.pop(p).producer.stop()
                self._reopen_at.pop(p, None)
                self._dropped_at[p] = loop.time()
                continue
            if p not in self._reopen_at:
                failures = self._failures[p] = self._failures.get(p, 0) + 1
                log.error(
                    "p%d: transaction failed (%d in a row); rebuilding",
                    p,
                    failures,
                    exc_info=err,
                )
                # Back off when it keeps failing (a broker in trouble), instead of spinning.
                self._reopen_at[p] = loop.time() + min(5.0, 0.1 * 2 ** (failures - 1))
            if loop.time() >= self._reopen_at[p]:
                # Rebuilt in the background; if that fails too (the broker still in trouble)
                # the broken shard stays, and is tried again after a longer back-off.
                del self._reopen_at[p]
                self._recover_in_background(p, fatal=False)

    async def _revive_orphans(self) -> None:
        """A partition still assigned to us long after we were fenced on it (the fencer was a
        zombie, or the group never moved it): take it back rather than leave it unowned."""
        assert self.consumer is not None
        now = asyncio.get_running_loop().time()
        assigned = {tp.partition for tp in self.consumer.assignment()}
        for p, dropped in list(self._dropped_at.items()):
            if p in self.shards or p in self._recovering or p not in assigned:
                del self._dropped_at[p]
            elif now - dropped > 2 * SESSION_TIMEOUT_MS / 1000:
                del self._dropped_at[p]
                log.warning("p%d: still assigned after being fenced; taking it back", p)
                self._recover_in_background(p, fatal=True)

    def stop(self) -> None:
        """Stop promptly (a signal handler may call it): the loop ends at its next turn, and
        folds in progress are abandoned (they have written nothing)."""
        self._stopping.set()
        for task in self._recovering.values():
            task.cancel()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()
        for shard in self.shards.values():
            await shard.producer.stop()


_FENCED = (ProducerFenced, InvalidProducerEpoch, InvalidProducerIdMapping)


def quiet_fenced_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Have `loop` drop asyncio's "Future exception was never retrieved" for futures failed by
    a fenced producer; every other report goes where it went before.

    The records of a fenced shard's transaction are consumed by the shard (see
    shard._Deliveries), but aiokafka (0.14) fails two futures of its own that nothing awaits:
    the transaction's waiter and each unsent batch's drain waiter, gone with the batch before
    anyone could retrieve them. The engine logs the fencing once ("fenced or no longer ours");
    without this, every rebalance that moves partitions away also logs a traceback per
    future."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        future = context.get("future")
        if (
            isinstance(future, asyncio.Future)
            and not isinstance(future, asyncio.Task)
            and isinstance(context.get("exception"), _FENCED)
        ):
            log.debug("a fenced producer's future failed unobserved: %s", context["exception"])
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def _fenced(err: BaseException) -> bool:
    """Whether a transaction failed because a newer producer took our transactional id."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, _FENCED):
            return True
        seen = seen.__cause__
    return False
