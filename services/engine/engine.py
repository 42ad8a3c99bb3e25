"""The engine process: a member of consumer group `baton-engine` over the commands topic,
deciding the commands of the partitions it owns.

Its loop fetches, decides each owned shard's commands, and hands the decisions to that
shard's committer (committer.py), which writes them in one transaction per batch while the
loop fetches again. Which partitions it owns, and how each is recovered before it decides
anything, is ownership.py: Kafka assigns partitions, and whoever holds a partition's
transactional id is the only one who can commit its outputs and offsets.

Membership is static (`group.instance.id` = the engine id), so an engine restarted after a
crash rejoins at once and gets its partitions back without a rebalance; a member that stays
away longer than the session timeout has its partitions moved to the other engines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.adapters.avro import Codec
from services.adapters.kafka import TOPIC_COMMANDS, new_admin, new_consumer
from services.engine.committer import TRANSACTION_LINGER_S, Committers
from services.engine.ownership import Ownership
from services.engine.shard import Shard, now_micros
from services.engine.snapshots import SNAPSHOT_INTERVAL_S
from services.engine.stats import LoopStats

log = logging.getLogger(__name__)

GROUP_ID = "baton-engine"
SESSION_TIMEOUT_MS = 10_000
IDLE_POLL_MS = 100
# A shard's decided-but-uncommitted records beyond which deciding waits for its transaction.
MAX_PENDING_RECORDS = 20_000
# How long a stop lets the transactions in flight finish before it aborts them (their inputs
# are decided again by the next owner): a broker that stopped answering must not keep an
# engine from stopping.
STOP_FLUSH_TIMEOUT_S = 5.0
REBALANCE_TIMEOUT_MS = 120_000


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
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.partition_count = partition_count
        self.codec = codec
        self.engine_id = engine_id
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.max_batch = max_batch
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self.stats = LoopStats()
        self.committers = Committers(self.stats, transaction_linger_s)
        self.ownership = Ownership(
            bootstrap,
            partition_count,
            codec,
            GROUP_ID,
            SESSION_TIMEOUT_MS,
            engine_id,
            heartbeat_timeout_s,
            self.committers,
            self._fail,
            snapshot_interval_s,
        )

    @property
    def shards(self) -> dict[int, Shard]:
        """The shards in place, by partition (not those still recovering)."""
        return self.ownership.shards

    @property
    def partitions(self) -> list[int]:
        return sorted(self.shards)

    def _fail(self, err: BaseException) -> None:
        """This engine cannot own what it was given: stop, and have run() raise `err`."""
        self._fatal = err
        self.stop()

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
        self.ownership.bind(self.consumer, self.admin)
        self.consumer.subscribe([TOPIC_COMMANDS], listener=self.ownership.listener())

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until this engine owns at least one partition and recovers none (tests and
        start-up logs)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.shards or self.ownership.recovering:
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
        reopen_at = self.ownership.reopen_at
        if reopen_at:
            loop_now = asyncio.get_running_loop().time()
            wait_ms = min(wait_ms, int((min(reopen_at.values()) - loop_now) * 1000))
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
        ownership = self.ownership
        stats = self.stats
        try:
            while not self._stopping.is_set():
                generation = ownership.generation
                owners = dict(self.shards)
                t0 = time.monotonic()
                batch = await consumer.getmany(timeout_ms=self._poll_timeout_ms())
                stats.fetch.add(time.monotonic() - t0)
                stats.loops += 1
                stats.maybe_log()
                async with ownership.lock:
                    await ownership.tend_failed()
                    await ownership.revive_orphans()
                    if generation != ownership.generation:
                        # Fetched across a rebalance: some of it may come from before the
                        # seeks and the consumer has moved past all of it. Drop it and read
                        # again from each shard's own position.
                        await self.committers.flush(self.shards.values())
                        for shard in self.shards.values():
                            await ownership.seek(shard)
                        continue
                    await self._decide(batch, owners)
                    self.committers.checkpoint_idle(self.shards.values())
            async with ownership.lock:
                try:
                    await asyncio.wait_for(
                        self.committers.flush_and_checkpoint(self.shards.values()),
                        STOP_FLUSH_TIMEOUT_S,
                    )
                except TimeoutError:
                    log.warning(
                        "transactions still in flight %.0f s after the stop; aborting them",
                        STOP_FLUSH_TIMEOUT_S,
                    )
        finally:
            # A stop during a fold: it commits nothing, so it is simply abandoned.
            for p in list(ownership.recovering):
                await ownership.cancel_recovery(p)
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
                await self.ownership.seek(shard)
            if shard.pending is not None and len(shard.pending) >= MAX_PENDING_RECORDS:
                # The broker is slower than the input: wait for the transaction in flight
                # rather than let one grow without bound.
                await self.committers.settle(shard)
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
            # Archived instances these records name, read back first (the last await before
            # the batch is decided; see Shard.recall).
            await shard.recall(records)
            if shard.broken() or self.shards.get(p) is not shard:
                continue  # failed or taken away meanwhile: its input is read again
            out = shard.decide_batch(records, now, lagging)
            self.stats.commands += len(records)
            next_offset = records[-1].offset + 1 if records else None
            if next_offset is not None:
                shard.decided_to = next_offset
            if out or next_offset is not None:
                self.committers.enqueue(shard, out, next_offset)
        self.stats.decide.add(time.monotonic() - t0)

    def stop(self) -> None:
        """Stop promptly (a signal handler may call it): the loop ends at its next turn, and
        folds in progress are abandoned (they have written nothing)."""
        self._stopping.set()
        for task in self.ownership.recovering.values():
            task.cancel()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()
        for shard in self.shards.values():
            await shard.close()
