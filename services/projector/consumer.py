"""The projector loop: events topic -> read models, positions kept beside the rows.

Delivery contract: the events topic is read `read_committed`; each fetched batch is applied
to the read models and the next offsets of its partitions are written in ONE PostgreSQL
transaction, so a crash at any instant neither skips nor double-applies an event. Offsets are
never committed to Kafka: on every assignment each partition is sought to its stored position
(or the beginning). The projections are also idempotent per event (belt and braces).

A record that cannot be decoded goes to the dead-letter topic with the reason and its source
coordinates, and is skipped: its offset advances with the batch. So does a poison event, one
that decodes but that PostgreSQL refuses to hold (`is_poison`: a NUL character, a value out
of a column's range, a broken constraint): when a batch fails so, it is rolled back and its
events are applied again one at a time, each under a savepoint in a transaction that is then
rolled back too, to find the ones refused; those are dead-lettered (logged once at ERROR), and
the batch is applied again without them, with the positions past them. The dead letters are on
the broker before those positions are committed: a send waits out a broker outage, retried
with back-off, and gives up only when the projector is stopping (nothing is then committed,
and the batch is read again by the next start).

PostgreSQL going away (a restart, a failover) is waited out, never fatal: the batch in flight
is dropped, the pool is closed (and made anew by `reconnect` once the database answers), and
every partition is sought back to the positions stored there, the only ones that count (a
commit whose reply was lost is then not applied twice). The waits double up to
`postgres.RETRY_CAP_S`; the outage is logged when it begins and when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError

from services.adapters.avro import Codec
from services.adapters.definitions import DefinitionReader
from services.adapters.kafka import TOPIC_EVENTS, new_consumer, new_producer
from services.adapters.postgres import is_poison, is_unavailable
from services.projector.batches import (
    Fetched,
    commit_batch,
    decode_batch,
    find_poison,
    ranges,
    with_definitions,
)
from services.projector.dead_letters import DeadLetters, StoppedWhileSending
from services.projector.offsets import stored_offsets
from services.projector.outage import DatabaseOutage

log = logging.getLogger(__name__)

GROUP_ID = "baton-projector"
PROJECTOR_NAME = "read_models"
MAX_RECORDS = 2000
FETCH_TIMEOUT_MS = 50
LAG_LOG_INTERVAL_S = 10.0


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._projector._invalidate()

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._projector._assigned(assigned)


class Projector:
    """Consumes the events topic and keeps the read models of `projections` up to date."""

    def __init__(
        self,
        bootstrap: str,
        pool: asyncpg.Pool,
        codec: Codec,
        *,
        group_id: str = GROUP_ID,
        topic: str = TOPIC_EVENTS,
        name: str = PROJECTOR_NAME,
        max_records: int = MAX_RECORDS,
        reconnect: Callable[[], Awaitable[asyncpg.Pool]] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._pool: asyncpg.Pool | None = pool
        # Without it, the pool is kept through an outage and reconnects its own connections.
        self._reconnect = reconnect
        self._codec = codec
        self._group_id = group_id
        self._topic = topic
        self._name = name
        self._max_records = max_records
        self._stopping = asyncio.Event()
        # Held while a batch is applied; a rebalance waits for it, then bumps the generation
        # so that records fetched before the rebalance are dropped (they are fetched again
        # from the stored positions).
        self._lock = asyncio.Lock()
        self._generation = 0
        self._applied: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters: DeadLetters | None = None
        self._definitions = DefinitionReader(bootstrap)
        # Set when the database failed under a batch or a seek: the consumer's positions are
        # then not the stored ones, and nothing is applied until they are again.
        self._resync = False
        self._outage = DatabaseOutage(name)
        self.applied_events = 0
        self.dead_lettered = 0

    @property
    def pool(self) -> asyncpg.Pool | None:
        """The pool in use: the one given, or the latest made by `reconnect` (None between an
        outage and the reconnection). Whoever built the projector closes it after `run()`."""
        return self._pool

    async def _current_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            assert self._reconnect is not None
            self._pool = await self._reconnect()  # raises while the database is still away
        return self._pool

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return (safe from a signal handler)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `stop()`; clients are started here and closed on the way out."""
        consumer = new_consumer(self._bootstrap, self._group_id)
        producer = new_producer(self._bootstrap)
        self._consumer = consumer
        self._dead_letters = DeadLetters(producer, self._stopping, self._name)
        consumer.subscribe([self._topic], listener=_SeekToStoredOffsets(self))
        await producer.start()
        try:
            await consumer.start()
            try:
                await self._loop(consumer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
            self._consumer = self._dead_letters = None

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        next_lag_log = time.monotonic() + LAG_LOG_INTERVAL_S
        while not self._stopping.is_set():
            generation = self._generation
            fetched = await consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=self._max_records
            )
            positions = await self._positions(consumer)
            try:
                async with self._lock:
                    if generation != self._generation or self._resync:
                        # A rebalance ran while these records were fetched (some may predate
                        # its seeks), or the database failed under the last batch: drop them
                        # all and resume from the stored positions.
                        log.debug("dropping records fetched before a resync: %s", ranges(fetched))
                        await self._seek_to_stored(consumer, consumer.assignment())
                        self._resync = False
                        self._applied.clear()
                        self._outage.over()
                        continue
                    # Save positions that moved even without records: the fetch position also
                    # steps over transaction markers, and a stored offset stuck just before
                    # the final marker would read as lag forever.
                    moved = any(pos > self._applied.get(tp, -1) for tp, pos in positions.items())
                    if fetched or moved:
                        await self._apply(fetched, positions)
                    self._applied.update(positions)
                    self._outage.over()
            except StoppedWhileSending as err:
                log.warning(
                    "projector %s: %s; the batch is read again at the next start", self._name, err
                )
                return
            except Exception as err:
                if not is_unavailable(err):
                    raise
                self._resync = True
                await self._database_away(err)
                continue
            if time.monotonic() >= next_lag_log:
                next_lag_log = time.monotonic() + LAG_LOG_INTERVAL_S
                log.debug("projector %s lag per partition: %s", self._name, self.lag())

    async def _database_away(self, err: BaseException) -> None:
        """Note the outage, forget the pool's connections and wait out the back-off, or less
        if `stop()` is called meanwhile."""
        delay = self._outage.failed(err)
        # A fresh pool after the outage rather than the old one's connections: asyncpg 0.32
        # reconnecting them in the background while they are handed out raced into
        # "InternalClientError: another operation is in progress" in the chaos test.
        if self._reconnect is not None and self._pool is not None:
            self._pool.terminate()
            self._pool = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _positions(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        # The fetch position is past the records just returned and past any transaction
        # markers; it is what a restart must resume from.
        out: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            try:
                # Returns at once when the position is known (the normal case).
                out[tp] = await consumer.position(tp)
            except IllegalStateError:  # revoked meanwhile: the generation check drops it
                continue
        return out

    async def _apply(self, fetched: Fetched, positions: Mapping[TopicPartition, int]) -> None:
        """Apply a batch and store its positions (dead-lettering what does not decode, and
        the poison events), in one transaction."""
        assert self._dead_letters is not None
        decoded, dead, next_offsets = decode_batch(self._codec, fetched, positions)
        decoded, unresolved = await with_definitions(self._definitions, decoded)
        dead += unresolved
        if dead:
            await self._dead_letters.send(dead)
        poisoned = 0
        while True:
            try:
                pool = await self._current_pool()
                events = [e for _, e in decoded]
                applied = await commit_batch(pool, self._name, self._topic, events, next_offsets)
                break
            except Exception as err:
                if not is_poison(err):
                    raise
                # Some event of the batch cannot be held: find which (the database's answer
                # to each alone, after the ones before it), dead-letter them, and apply the
                # rest. A batch that fails while no event alone does is not one event's
                # fault, and raises.
                found = await find_poison(await self._current_pool(), decoded)
                if not found:
                    raise
                await self._dead_letters.send(
                    [(record, reason) for record, _, reason in found], poison=True
                )
                refused = {id(event) for _, event, _ in found}
                decoded = [(r, e) for r, e in decoded if id(e) not in refused]
                poisoned += len(found)
        self.applied_events += applied
        log.debug("applied %d new events from %s", applied, ranges(fetched))
        self.dead_lettered += len(dead) + poisoned

    async def _invalidate(self) -> None:
        async with self._lock:
            self._generation += 1
            self._applied.clear()

    async def _assigned(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            self._generation += 1
            try:
                stored = await self._seek_to_stored(consumer, assigned)
            except Exception as err:
                if not is_unavailable(err):
                    raise
                # The loop seeks them once the database answers; until then it applies nothing.
                self._resync = True
                log.warning(
                    "projector %s assigned partitions %s while PostgreSQL is unavailable (%s); "
                    "they resume at their stored positions once it is back",
                    self._name,
                    sorted(tp.partition for tp in assigned),
                    err,
                )
                return
        log.info(
            "projector %s assigned partitions %s; resuming at %s",
            self._name,
            sorted(tp.partition for tp in assigned),
            {tp.partition: stored.get(tp.partition, 0) for tp in assigned},
        )

    async def _seek_to_stored(
        self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
    ) -> dict[int, int]:
        """Seek each partition to its stored position, or 0 (the log's start) if none."""
        pool = await self._current_pool()
        async with pool.acquire() as conn:
            stored = await stored_offsets(conn, self._name, self._topic)
        # No await from here on: every seek lands before the next fetch is handed out.
        # An offset before the log's start is reset to the start by the consumer.
        current = consumer.assignment()
        for tp in partitions:
            if tp in current:
                consumer.seek(tp, stored.get(tp.partition, 0))
        return stored

    def lag(self) -> dict[int, int | None]:
        """Per assigned partition: records not yet applied (None: not known yet)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[int, int | None] = {}
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None or end < 0:
                end = consumer.highwater(tp)
            applied = self._applied.get(tp)
            out[tp.partition] = None if end is None or applied is None else max(0, end - applied)
        return out

    def caught_up(self) -> bool:
        """True when partitions are assigned and every one is applied to its known end."""
        lag = self.lag()
        return bool(lag) and all(v == 0 for v in lag.values())
