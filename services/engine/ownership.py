"""The partitions an engine owns: taking them when the group assigns them, recovering each
in a task of its own, and tending the shards whose transaction failed.

For each partition p gained, commands partition p is paused and p recovered in the
background: its transactional producer (`baton-engine-p<p>`) is opened — which aborts any
transaction the previous owner left open and fences that owner for good — events partition
p is folded, and commands partition p is sought to the offset of the last successful
transaction and resumed. Only then are p's commands decided; the rebalance callback returns
at once, so a long fold neither holds the group up nor keeps the loop from heartbeating or
stopping. Whoever holds p's transactional id is the only one who can commit p's outputs and
offsets: correctness never depends on group timing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.adapters.avro import Codec
from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.kafka import TOPIC_COMMANDS, new_transactional_producer
from services.engine.committer import Committers
from services.engine.fencing import is_fenced
from services.engine.shard import Shard, now_micros
from services.engine.snapshots import SNAPSHOT_INTERVAL_S
from services.engine.task_topics import TaskTopics

# The engine's own logger: these lines were the engine's before they moved here, and
# operators' filters know them by that name.
log = logging.getLogger("services.engine.engine")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Let every decided batch commit (or fail) before the group moves partitions, so a
        # new owner never fences a transaction we are about to finish. Eager rebalancing
        # revokes everything before every assignment; shards that come back are kept (see
        # on_partitions_assigned), so nothing is dropped here.
        ownership = self.ownership
        async with ownership.lock:
            await ownership.committers.flush(ownership.shards.values())
            await ownership.committers.checkpoint_all(ownership.shards.values())

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.ownership.assigned({tp.partition for tp in assigned})


class Ownership:
    def __init__(
        self,
        bootstrap: str,
        partition_count: int,
        codec: Codec,
        group_id: str,
        session_timeout_ms: int,
        engine_id: str,
        heartbeat_timeout_s: float,
        committers: Committers,
        on_fatal: Callable[[BaseException], None],
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
    ) -> None:
        """`group_id`, `session_timeout_ms`: the engine's consumer group and its session
        timeout. `on_fatal(err)`: this engine cannot own a partition it was given; it must stop (a
        restart or another engine takes the partition over)."""
        self.bootstrap = bootstrap
        self.partition_count = partition_count
        self.codec = codec
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self.engine_id = engine_id
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.committers = committers
        self.on_fatal = on_fatal
        # Snapshots: how often a busy shard writes one (0: never written nor read).
        self.snapshot_interval_s = snapshot_interval_s
        self.snapshot_codec = SnapshotCodec()
        self.task_topics = TaskTopics(bootstrap, partition_count)
        self.shards: dict[int, Shard] = {}
        # Set by bind, once the engine has started them.
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        # Held while deciding a batch and while partitions change hands.
        self.lock = asyncio.Lock()
        # Bumped on every assignment: a batch fetched across one is dropped and re-read
        # from the committed offsets.
        self.generation = 0
        # Partitions whose shard was dropped after being fenced, and when.
        self._dropped_at: dict[int, float] = {}
        # Shards waiting to be rebuilt after a failed transaction, and when to do it.
        self.reopen_at: dict[int, float] = {}
        # Partitions being recovered (opened and folded) in the background; their commands
        # partitions are paused until the shard is in place.
        self.recovering: dict[int, asyncio.Task[None]] = {}

    def bind(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> None:
        """The engine's started consumer and admin client; before the first assignment."""
        self.consumer = consumer
        self.admin = admin

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance callbacks to subscribe with."""
        return _Rebalance(self)

    async def _open_shard(self, p: int) -> Shard:
        producer = new_transactional_producer(self.bootstrap, f"baton-engine-p{p}")
        shard = Shard(
            p,
            producer,
            self.codec,
            self.group_id,
            self.heartbeat_timeout_s,
            self.task_topics.ensure,
            self.partition_count,
            self.snapshot_codec,
            self.snapshot_interval_s,
        )
        t0 = now_micros()
        try:
            await producer.start()  # init_transactions: fences the previous owner of p
            count = await shard.load(self.bootstrap, now_micros())
            await self._fetch_committed(shard)
        except BaseException:
            await shard.close()  # failed or cancelled (a stop, a revocation): not leaked
            raise
        log.info(
            "p%d: %s, folded %d events into %d live instances (%d archived) in %.0f ms",
            p,
            "no snapshot"
            if shard.snapshot_records is None
            else f"restored a snapshot of {shard.snapshot_records} records",
            count,
            len(shard.instances),
            len(shard.archive),
            (now_micros() - t0) / 1000,
        )
        return shard

    async def _fetch_committed(self, shard: Shard) -> None:
        # Asked of the group coordinator after the producer was opened: by then the previous
        # owner's last transaction is either committed (its offsets visible) or aborted.
        assert self.admin is not None
        offsets = await self.admin.list_consumer_group_offsets(
            self.group_id, partitions=[shard.commands_tp]
        )
        committed = offsets.get(shard.commands_tp)
        group = committed.offset if committed and committed.offset >= 0 else None
        shard.group_position = group
        # Both were written by committed transactions; the later one is the position.
        known = [o for o in (group, shard.logged_position) if o is not None]
        shard.position = max(known) if known else None
        shard.decided_to = shard.position

    async def seek(self, shard: Shard) -> None:
        """Commands partition p to the shard's position: where it decides next."""
        assert self.consumer is not None
        if shard.position is None:
            await self.consumer.seek_to_beginning(shard.commands_tp)
        else:
            self.consumer.seek(shard.commands_tp, shard.position)

    async def assigned(self, partitions: set[int]) -> None:
        """The group's new assignment (the rebalance callback)."""
        try:
            await self._take(partitions)
        except Exception as err:
            # aiokafka would only log this and keep the partitions assigned to us, unowned
            # and silent. Stop instead: a restart (or another engine) takes them over.
            log.critical("engine %s could not take partitions %s", self.engine_id, partitions)
            self.on_fatal(err)

    async def _take(self, partitions: set[int]) -> None:
        """The new assignment: shards kept are re-sought, the others dropped, and the new
        ones recovered in the background (see _recover). Returns without folding anything."""
        assert self.consumer is not None
        async with self.lock:
            await self.committers.flush(self.shards.values())
            self.generation += 1
            for p in sorted(set(self.shards) - partitions):
                await self.shards.pop(p).close()
                self.reopen_at.pop(p, None)
            for p in sorted(set(self.recovering) - partitions):
                await self.cancel_recovery(p)
            for shard in self.shards.values():
                await self.seek(shard)
            for p in sorted(partitions - set(self.shards)):
                # Also those still recovering from an earlier assignment: a new assignment
                # forgets which partitions were paused.
                self.consumer.pause(TopicPartition(TOPIC_COMMANDS, p))
                if p not in self.recovering:
                    self._recover_in_background(p, fatal=True)
            log.info(
                "engine %s owns partitions %s; recovering %s",
                self.engine_id,
                sorted(self.shards),
                sorted(self.recovering),
            )

    def _recover_in_background(self, p: int, fatal: bool) -> None:
        """Pause commands partition p (the caller holds the lock) and recover p in a task."""
        assert self.consumer is not None
        self.consumer.pause(TopicPartition(TOPIC_COMMANDS, p))
        self.recovering[p] = asyncio.create_task(self._recover(p, fatal), name=f"recover-p{p}")

    async def _recover(self, p: int, fatal: bool) -> None:
        """Open and fold shard p, then put it in place (replacing a broken one), seek its
        commands partition and resume it. Other partitions decide meanwhile: the fold yields
        to the loop, and nothing of p is decided until it is in place.

        A failure is fatal for a partition just assigned (as when taking partitions was one
        step: a restart or another engine takes it over); a rebuild that fails leaves the
        broken shard in place, to be tried again after a back-off (see tend_failed)."""
        try:
            shard = await self._open_shard(p)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            async with self.lock:
                if self.recovering.get(p) is asyncio.current_task():
                    del self.recovering[p]
                old = self.shards.get(p)
                if not fatal:
                    if old is not None:
                        old.failed = err  # tried again after a longer back-off
                    return
            log.critical("engine %s could not take partition %d", self.engine_id, p)
            self.on_fatal(err)
            return
        await self._put_in_place(p, shard)

    async def _put_in_place(self, p: int, shard: Shard) -> None:
        """The recovered shard replaces p's (unless superseded meanwhile); its commands
        partition is sought and resumed."""
        assert self.consumer is not None
        try:
            async with self.lock:
                if self.recovering.get(p) is not asyncio.current_task():
                    await shard.close()  # superseded meanwhile
                    return
                del self.recovering[p]
                old = self.shards.get(p)
                self.shards[p] = shard
                if old is not None:
                    await old.close()
                await self.seek(shard)
                self.consumer.resume(shard.commands_tp)
        except asyncio.CancelledError:
            if self.shards.get(p) is not shard:
                await shard.close()
            raise

    async def cancel_recovery(self, p: int) -> None:
        """Abandon p's recovery (it has written nothing), once it has ended."""
        task = self.recovering.pop(p)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def tend_failed(self) -> None:
        """Shards whose transaction failed: drop the fenced ones, rebuild the others from the
        log (with a back-off while it keeps failing). Under the lock."""
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        for p, shard in list(self.shards.items()):
            err = shard.failed
            if err is None or p in self.recovering:
                continue
            if is_fenced(err) or shard.commands_tp not in self.consumer.assignment():
                # Another engine opened p's producer: it owns p now. Reopening here would
                # fence it back; the group will tell us (see revive_orphans).
                log.warning("p%d: fenced or no longer ours; shard dropped", p)
                await self.shards.pop(p).close()
                self.reopen_at.pop(p, None)
                self._dropped_at[p] = loop.time()
                continue
            if p not in self.reopen_at:
                failures = self.committers.failures[p] = self.committers.failures.get(p, 0) + 1
                log.error(
                    "p%d: a transaction or an archive read failed (%d in a row); rebuilding",
                    p,
                    failures,
                    exc_info=err,
                )
                # Back off when it keeps failing (a broker in trouble), instead of spinning.
                self.reopen_at[p] = loop.time() + min(5.0, 0.1 * 2 ** (failures - 1))
            if loop.time() >= self.reopen_at[p]:
                # Rebuilt in the background; if that fails too (the broker still in trouble)
                # the broken shard stays, and is tried again after a longer back-off.
                del self.reopen_at[p]
                self._recover_in_background(p, fatal=False)

    async def revive_orphans(self) -> None:
        """A partition still assigned to us long after we were fenced on it (the fencer was a
        zombie, or the group never moved it): take it back rather than leave it unowned."""
        assert self.consumer is not None
        now = asyncio.get_running_loop().time()
        assigned = {tp.partition for tp in self.consumer.assignment()}
        for p, dropped in list(self._dropped_at.items()):
            if p in self.shards or p in self.recovering or p not in assigned:
                del self._dropped_at[p]
            elif now - dropped > 2 * self.session_timeout_ms / 1000:
                del self._dropped_at[p]
                log.warning("p%d: still assigned after being fenced; taking it back", p)
                self._recover_in_background(p, fatal=True)
