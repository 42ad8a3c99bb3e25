"""A shard's archived aggregates, read back when a command names one (see archive.py for
what the archive is and why it stays exactly-once)."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.kafka import TOPIC_ARCHIVE, new_consumer
from services.engine.archive import ArchiveIndex, read_segment
from services.engine.snapshots import restore_record, state_key

log = logging.getLogger(__name__)

# How long one archived record may take to arrive before the read is an error.
READ_TIMEOUT_MS = 5000


class Archive:
    """What a shard knows of its archived aggregates: the index (16 bytes each), how many
    index segments its snapshot partition holds, and the aggregates recalled to memory."""

    def __init__(self, partition: int, codec: SnapshotCodec, definitions: dict[str, str]) -> None:
        self.partition = partition
        self.codec = codec
        self.definitions = definitions  # the shard's own map (hash -> text), shared
        self.index = ArchiveIndex()
        self.segments = 0
        self.reader: ArchiveReader | None = None
        # Recalled and not changed since (by (aggregate, key)): they leave memory again at the
        # next flush, unless a recall is reading them right now (`recalling`).
        self.recalled: set[tuple[str, str]] = set()
        self.recalling: set[tuple[str, str]] = set()
        # Looked up and found not archived (a hash collision), until they are.
        self.absent: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.index)

    def restore(self, segments: list[bytes]) -> None:
        for data in segments:
            self.index.add_entries(read_segment(data))
        self.segments = len(segments)

    def holds(self, aggregate: str, key: str) -> bool:
        """`key` may be archived (the read decides; see `load`)."""
        skey = state_key(aggregate, key)
        return skey not in self.absent and skey in self.index

    async def load(self, aggregate: str, key: str) -> Any | None:
        """The archived state of `key`, or None: not archived after all (noted in `absent`).
        A record this code cannot read raises: it is no cache, the state lives only there
        and in the log."""
        skey = state_key(aggregate, key)
        if self.reader is None:
            raise RuntimeError("the archive is read before the shard is loaded")
        value = await self.reader.read(skey, self.index.offsets(skey))
        if value is None:
            self.absent.add(skey)
            return None
        _, _, state = restore_record(self.codec, skey, value, self.definitions)
        return state

    def add(self, entries: list[tuple[bytes, int]], segments: int) -> None:
        """Entries a committed flush archived, in `segments` new index segments."""
        for skey, offset in entries:
            self.index.add(skey, offset)
            self.absent.discard(skey)
        self.segments += segments

    async def close(self) -> None:
        if self.reader is not None:
            await self.reader.close()


class ArchiveReader:
    """Reads archived records of one archive partition back, on demand (a consumer of its
    own, no group, started at the first read)."""

    def __init__(self, bootstrap: str, partition: int) -> None:
        self.bootstrap = bootstrap
        self.tp = TopicPartition(TOPIC_ARCHIVE, partition)
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, key: bytes, offsets: list[int]) -> bytes | None:
        """The value of `key`'s newest record among `offsets` (newest first), or None: no
        record there is `key`'s (a hash collision only)."""
        consumer = await self._started()
        for offset in offsets:
            consumer.seek(self.tp, offset)
            record = await self._first_from(consumer, offset)
            # Compaction may have removed an older record of a key archived again since (the
            # fetch then returns a later record): only the exact offset and key count.
            if record.offset == offset and record.key == key and record.value is not None:
                return bytes(record.value)
        return None

    async def _first_from(self, consumer: AIOKafkaConsumer, offset: int) -> Any:
        """The first committed record at or after `offset`; TimeoutError after
        READ_TIMEOUT_MS (an offset the index holds always has a record at or after it)."""
        deadline = time.monotonic() + READ_TIMEOUT_MS / 1000
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(self.tp, timeout_ms=int(left * 1000), max_records=1)
            for record in batch.get(self.tp, []):
                if record.offset >= offset:  # never one fetched before the seek
                    return record
        raise TimeoutError(f"{self.tp} @{offset}: no record within {READ_TIMEOUT_MS} ms")

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            # One record is wanted: fetch about one batch, not the partition's 4 MiB default
            # (a broker always returns at least one whole batch).
            consumer = new_consumer(
                self.bootstrap, None, max_partition_fetch_bytes=64 << 10, fetch_max_bytes=1 << 20
            )
            try:
                await consumer.start()
            except BaseException:  # a stop or a revocation meanwhile: nothing leaked
                await consumer.stop()
                raise
            consumer.assign([self.tp])
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
