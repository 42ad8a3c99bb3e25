"""A shard's archived aggregates, read back when a command names one (see archive.py for
what the archive is and why it stays exactly-once)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.adapters.avro.errors import DecodeError
from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.kafka import TOPIC_ARCHIVE, new_consumer
from services.domain.decider import AGGREGATES, Aggregate
from services.domain.protocol.events import Event
from services.engine.archive import SEGMENT_ENTRIES, ArchiveIndex, read_segment
from services.engine.snapshots import restore_record, state_key

log = logging.getLogger(__name__)

# At most this many aggregates leave memory in one flush (its transaction stays small, ~2 KB
# each); more waiting (after a fold of a long log without a snapshot) flush again at once.
ARCHIVE_PER_FLUSH = 5_000
_BY_NAME = {a.name: a for a in AGGREGATES}
# How long one archived record may take to arrive before the read is an error.
READ_TIMEOUT_MS = 5000
# Reading an archived record back failed for a reason no retry can fix: this code cannot read
# what is there (a newer Baton's record, damage, a definition the partition lacks). Any other
# failure (the broker, a timeout) is the shard's: it is rebuilt and reads its input again.
UNREADABLE = (DecodeError, KeyError, ValueError, TypeError)


class ArchivedStateUnreadable(Exception):
    """A command names an aggregate whose archived state this code cannot read back: it is
    dead-lettered with the reason, and the partition goes on (see Archive.unreadable)."""


class Archive:
    """What a shard knows of its archived aggregates: the index (16 bytes each), how many
    index segments its snapshot partition holds, and the aggregates recalled to memory."""

    def __init__(
        self,
        partition: int,
        codec: SnapshotCodec,
        definitions: dict[str, str],
        states: dict[str, dict[str, Any]],
    ) -> None:
        self.partition = partition
        self.codec = codec
        self.definitions = definitions  # the shard's own map (hash -> text), shared
        self.states = states  # the shard's states by aggregate type, shared
        self.index = ArchiveIndex()
        self.segments = 0
        self.reader: ArchiveReader | None = None
        # Recalled and not changed since (by (aggregate, key)): they leave memory again at the
        # next flush, unless a recall is reading them right now (`recalling`).
        self.recalled: set[tuple[str, str]] = set()
        self.recalling: set[tuple[str, str]] = set()
        # Looked up and found not archived (a hash collision), until they are.
        self.absent: set[bytes] = set()
        # Archived, and found unreadable (UNREADABLE), by (aggregate, key): the reason. The
        # commands that name one are dead-lettered, never decided on a state made up; the
        # next load of the shard tries again (after an upgrade that reads it, say).
        self.unreadable: dict[tuple[str, str], str] = {}
        # The events of archived aggregates a recovery's tail holds, by (aggregate, key):
        # applied once their state is read back (`unpark`).
        self._parked: dict[tuple[str, str], list[Event]] = {}

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
        A record this code cannot read raises (UNREADABLE): it is no cache, the state lives
        only there and in the log."""
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

    # --- recovery -----------------------------------------------------------------------

    def park(self, aggregate: Aggregate[Any], key: str, state: Any, event: Event) -> bool:
        """During a recovery's fold: keep `event` for later when its aggregate is archived
        (it has no state in memory, and the index may hold it) or already parked."""
        parked = self._parked.get((aggregate.name, key))
        if parked is None:
            if state is not None or aggregate.evictable is None:
                return False
            if not self.holds(aggregate.name, key):
                return False
            parked = self._parked[(aggregate.name, key)] = []
        parked.append(event)
        return True

    async def unpark(self) -> set[tuple[str, str]]:
        """After the fold: the archived aggregates the tail revived, read back, then their
        events of the tail applied (those the archived state already holds skipped).
        Returns them (changed since the snapshot)."""
        parked, self._parked = self._parked, {}
        for (name, key), events in parked.items():
            aggregate = _BY_NAME[name]
            state = await self._load_readable(name, key)
            if (name, key) in self.unreadable:
                continue  # its events stay in the log; its commands are dead-lettered
            for event in events:
                if state is None or event.seq > state.seq:
                    state = aggregate.evolve(state, event)
            self.states[name][key] = state
        return set(parked) - set(self.unreadable)

    # --- deciding ------------------------------------------------------------------------

    async def recall(self, name: str, keys: Iterable[str]) -> None:
        """Read back the archived aggregates of type `name` among `keys` into memory."""
        held = self.states[name]
        wanted = [(name, k) for k in keys if k not in held and self.holds(name, k)]
        if not wanted:
            return
        self.recalling.update(wanted)
        try:
            for _, key in wanted:
                if key in held:
                    continue  # named twice
                state = await self._load_readable(name, key)
                if state is not None:
                    held[key] = state
                    self.recalled.add((name, key))
        finally:
            self.recalling.difference_update(wanted)

    async def _load_readable(self, name: str, key: str) -> Any | None:
        """`load`, with a record this code cannot read noted in `unreadable` (None then)."""
        try:
            return await self.load(name, key)
        except UNREADABLE as err:
            reason = f"{type(err).__name__}: {err}"
            log.error(
                "p%d: archived %s %s cannot be read back: %s", self.partition, name, key, reason
            )
            self.unreadable[(name, key)] = reason
            return None

    def check_readable(self, name: str, key: str) -> None:
        """ArchivedStateUnreadable when `key`'s archived state was found unreadable."""
        reason = self.unreadable.get((name, key))
        if reason is not None:
            raise ArchivedStateUnreadable(f"the archived state of {name} {key}: {reason}")

    # --- flushing ------------------------------------------------------------------------

    def split(
        self, dirty: Iterable[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], Any]]:
        """The changed states a flush writes: (to the snapshot, to the archive: at most
        ARCHIVE_PER_FLUSH evictable ones). Recalled states no decision changed leave memory
        here: the archive still holds exactly them."""
        states: dict[tuple[str, str], Any] = {}
        archived: dict[tuple[str, str], Any] = {}
        for name, key in dirty:
            state = self.states[name][key]
            evictable = _BY_NAME[name].evictable
            if evictable is not None and len(archived) < ARCHIVE_PER_FLUSH and evictable(state):
                archived[(name, key)] = state
            else:
                states[(name, key)] = state
        for name, key in self.recalled - self.recalling:
            self.states[name].pop(key, None)
        self.recalled &= self.recalling
        return states, archived

    def committed(
        self, archived: dict[tuple[str, str], Any], entries: list[tuple[bytes, int]]
    ) -> None:
        """The flush that archived `archived` committed, with index `entries`: they leave
        memory (unless a decision changed one since: it is written again at the next
        flush), the index takes the entries."""
        self.add(entries, -(-len(entries) // SEGMENT_ENTRIES))
        for (name, key), state in archived.items():
            if self.states[name].get(key) is state:
                del self.states[name][key]

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
