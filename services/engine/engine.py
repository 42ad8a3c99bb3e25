"""The engine process: owns a set of commands partitions and drives their shards.

Ownership is static (`BATON_ENGINE_PARTITIONS`, default all): on start the engine creates the
per-partition transactional producers — which fences any zombie still holding them — folds
each partition's events, seeks to the committed input offset and consumes. Correctness never
depends on group membership: only the holder of a partition's transactional id can commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.adapters.avro import Codec
from services.adapters.kafka import (
    TOPIC_COMMANDS,
    ensure_topics,
    new_consumer,
    new_transactional_producer,
    task_topic,
)
from services.engine.shard import Shard, now_micros

log = logging.getLogger(__name__)

GROUP_ID = "baton-engine"
IDLE_POLL_MS = 100


class Engine:
    def __init__(
        self,
        bootstrap: str,
        partitions: Iterable[int],
        partition_count: int,
        codec: Codec,
        heartbeat_timeout_s: float = 30.0,
        max_batch: int = 2000,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = sorted(partitions)
        self.partition_count = partition_count
        self.codec = codec
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.max_batch = max_batch
        self.shards: dict[int, Shard] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._queues: set[str] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    async def _ensure_queue(self, queue: str) -> None:
        if queue not in self._queues:
            await ensure_topics(self.bootstrap, self.partition_count, [queue])
            self._queues.add(queue)
            log.info("task topic %s ready", task_topic(queue))

    async def _open_shard(self, p: int) -> Shard:
        producer = new_transactional_producer(self.bootstrap, f"baton-engine-p{p}")
        await producer.start()  # init_transactions: fences the previous owner of p
        shard = Shard(
            p, producer, self.codec, GROUP_ID, self.heartbeat_timeout_s, self._ensure_queue
        )
        t0 = now_micros()
        count = await shard.load(self.bootstrap, now_micros())
        log.info(
            "p%d: folded %d events into %d instances in %.0f ms",
            p,
            count,
            len(shard.instances),
            (now_micros() - t0) / 1000,
        )
        return shard

    async def start(self) -> None:
        shards = await asyncio.gather(*(self._open_shard(p) for p in self.partitions))
        self.shards = {s.partition: s for s in shards}
        self.consumer = new_consumer(
            self.bootstrap, GROUP_ID, max_poll_records=self.max_batch, fetch_max_wait_ms=5
        )
        await self.consumer.start()
        tps = [TopicPartition(TOPIC_COMMANDS, p) for p in self.partitions]
        self.consumer.assign(tps)
        for shard in self.shards.values():
            committed = await shard.committed_offset(self.consumer)
            if committed is None:
                await self.consumer.seek_to_beginning(shard.commands_tp)
            else:
                self.consumer.seek(shard.commands_tp, committed)
        self.ready.set()
        log.info("engine owns partitions %s", self.partitions)

    def _poll_timeout_ms(self) -> int:
        dues = [d for d in (s.next_due() for s in self.shards.values()) if d is not None]
        if not dues:
            return IDLE_POLL_MS
        wait_ms = (min(dues) - now_micros()) // 1000
        return int(max(0, min(IDLE_POLL_MS, wait_ms)))

    async def run(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=self._poll_timeout_ms())
            now = now_micros()
            work = []
            for shard in self.shards.values():
                records = batch.get(shard.commands_tp, [])
                out = shard.decide_batch(records, now)
                next_offset = records[-1].offset + 1 if records else None
                if out or next_offset is not None:
                    work.append(self._commit(shard, out, next_offset))
            if work:
                await asyncio.gather(*work)

    async def _commit(self, shard: Shard, out: object, next_offset: int | None) -> None:
        try:
            await shard.commit(out, next_offset)  # type: ignore[arg-type]
        except KafkaError:
            # The in-memory state already holds what failed to commit: rebuild the shard
            # from the log and re-read its inputs from the committed offset.
            log.exception("p%d: transaction failed; rebuilding the shard", shard.partition)
            await self._reopen(shard.partition)

    async def _reopen(self, p: int) -> None:
        assert self.consumer is not None
        old = self.shards.pop(p)
        await old.producer.stop()
        shard = await self._open_shard(p)
        self.shards[p] = shard
        committed = await shard.committed_offset(self.consumer)
        if committed is None:
            await self.consumer.seek_to_beginning(shard.commands_tp)
        else:
            self.consumer.seek(shard.commands_tp, committed)

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        for shard in self.shards.values():
            await shard.producer.stop()
