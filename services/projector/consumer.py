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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from projections import apply_batch
from projections.tables import Conn
from services.adapters.avro import Codec, DecodeError
from services.adapters.kafka import (
    TOPIC_DEADLETTER,
    TOPIC_EVENTS,
    dead_letter_headers,
    new_consumer,
    new_producer,
)
from services.adapters.logs import kafka_loss
from services.adapters.postgres import is_poison, is_unavailable, retry_delay
from services.domain.protocol.events import Event

log = logging.getLogger(__name__)

GROUP_ID = "baton-projector"
PROJECTOR_NAME = "read_models"
MAX_RECORDS = 2000
FETCH_TIMEOUT_MS = 50
LAG_LOG_INTERVAL_S = 10.0

_SAVE_OFFSETS = """
INSERT INTO projector_offsets (projector, topic, partition, next_offset)
SELECT $1, $2, p, o FROM unnest($3::int4[], $4::int8[]) AS t(p, o)
ON CONFLICT (projector, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""
_LOAD_OFFSETS = """
SELECT partition, next_offset FROM projector_offsets WHERE projector = $1 AND topic = $2
"""


async def stored_offsets(conn: Conn, projector: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch(_LOAD_OFFSETS, projector, topic)
    return {r["partition"]: r["next_offset"] for r in rows}


class _Stopped(Exception):
    """The projector was asked to stop while a batch waited on the broker: nothing of it is
    committed, and the next start reads it again."""


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
        self._producer: AIOKafkaProducer | None = None
        # Set when the database failed under a batch or a seek: the consumer's positions are
        # then not the stored ones, and nothing is applied until they are again.
        self._resync = False
        self._outage_since: float | None = None
        self._outage_retries = 0
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
        self._consumer, self._producer = consumer, producer
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
            self._consumer = self._producer = None

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
                        log.debug("dropping records fetched before a resync: %s", _ranges(fetched))
                        await self._seek_to_stored(consumer, consumer.assignment())
                        self._resync = False
                        self._applied.clear()
                        self._database_back()
                        continue
                    # Save positions that moved even without records: the fetch position also
                    # steps over transaction markers, and a stored offset stuck just before
                    # the final marker would read as lag forever.
                    moved = any(pos > self._applied.get(tp, -1) for tp, pos in positions.items())
                    if fetched or moved:
                        await self._apply(fetched, positions)
                    self._applied.update(positions)
                    self._database_back()
            except _Stopped as err:
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
        """Note the outage (logged once, when it begins), forget the pool's connections and
        wait out the back-off, or less if `stop()` is called meanwhile."""
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            log.warning(
                "projector %s: PostgreSQL is unavailable (%s: %s); retrying with back-off",
                self._name,
                type(err).__name__,
                err,
                extra={"outage": "postgres"},  # the first of an outage (services.adapters.logs)
            )
        else:
            log.debug("projector %s: PostgreSQL still unavailable: %s", self._name, err)
        # A fresh pool after the outage rather than the old one's connections: asyncpg 0.32
        # reconnecting them in the background while they are handed out raced into
        # "InternalClientError: another operation is in progress" in the chaos test.
        if self._reconnect is not None and self._pool is not None:
            self._pool.terminate()
            self._pool = None
        delay = retry_delay(self._outage_retries)
        self._outage_retries += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    def _database_back(self) -> None:
        if self._outage_since is None:
            return
        log.info(
            "projector %s: PostgreSQL is back after %.1f s (%d retries); resumed at the "
            "stored positions",
            self._name,
            time.monotonic() - self._outage_since,
            self._outage_retries,
            extra={"outage_over": "postgres"},
        )
        self._outage_since = None
        self._outage_retries = 0

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

    async def _apply(
        self,
        fetched: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        positions: Mapping[TopicPartition, int],
    ) -> None:
        decoded: list[tuple[ConsumerRecord[bytes, bytes], Event]] = []
        dead: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        next_offsets: dict[int, int] = {tp.partition: pos for tp, pos in positions.items()}
        for tp, records in fetched.items():
            if not records:
                continue
            for record in records:
                try:
                    if record.value is None:
                        raise DecodeError("record has no value")
                    decoded.append((record, self._codec.decode_event(record.value)))
                except DecodeError as err:
                    dead.append((record, str(err) or type(err).__name__))
            next_offsets[tp.partition] = max(records[-1].offset + 1, positions.get(tp, 0))
        if dead:
            await self._dead_letter(dead)
        poisoned = 0
        while True:
            try:
                applied = await self._commit([e for _, e in decoded], next_offsets)
                break
            except Exception as err:
                if not is_poison(err):
                    raise
                # Some event of the batch cannot be held: find which (the database's answer
                # to each alone, after the ones before it), dead-letter them, and apply the
                # rest. A batch that fails while no event alone does is not one event's
                # fault, and raises.
                found = await self._find_poison(decoded)
                if not found:
                    raise
                await self._dead_letter(
                    [(record, reason) for record, _, reason in found], poison=True
                )
                refused = {id(event) for _, event, _ in found}
                decoded = [(r, e) for r, e in decoded if id(e) not in refused]
                poisoned += len(found)
        self.applied_events += applied
        log.debug("applied %d new events from %s", applied, _ranges(fetched))
        self.dead_lettered += len(dead) + poisoned

    async def _commit(self, events: Sequence[Event], next_offsets: Mapping[int, int]) -> int:
        """Apply `events` and store the positions, in one transaction; returns how many were new."""
        pool = await self._current_pool()
        async with pool.acquire() as conn, conn.transaction():
            applied = await apply_batch(conn, events)
            await conn.execute(
                _SAVE_OFFSETS,
                self._name,
                self._topic,
                list(next_offsets),
                list(next_offsets.values()),
            )
        return applied

    async def _find_poison(
        self, decoded: Sequence[tuple[ConsumerRecord[bytes, bytes], Event]]
    ) -> list[tuple[ConsumerRecord[bytes, bytes], Event, str]]:
        """The events of a batch PostgreSQL refuses, each applied alone after the ones before
        it (as in the batch: one transaction, a savepoint each), then all rolled back.

        Deterministic, as the rebuild needs: whether an event is refused depends on the event
        and the rows the events before it made, not on where a batch begins; every event's
        whole payload is in `events` (the history), so a value it cannot hold is refused there
        whatever the batch. Costs one round trip per event, and only for a batch that failed."""
        found: list[tuple[ConsumerRecord[bytes, bytes], Event, str]] = []
        pool = await self._current_pool()
        async with pool.acquire() as conn:
            outer = conn.transaction()
            await outer.start()
            try:
                for record, event in decoded:
                    try:
                        async with conn.transaction():  # a savepoint
                            await apply_batch(conn, [event])
                    except Exception as err:
                        if not is_poison(err):
                            raise
                        reason = f"event {event.event_id} ({event.type}) cannot be projected: "
                        found.append((record, event, f"{reason}{type(err).__name__}: {err}"))
            finally:
                await outer.rollback()
        return found

    async def _dead_letter(
        self, dead: list[tuple[ConsumerRecord[bytes, bytes], str]], *, poison: bool = False
    ) -> None:
        """Send each record to the dead-letter topic with its reason; returns once every one is
        on the broker. Logged once per record (at ERROR for a poison event: the log holds an
        event the read models will never show)."""
        for record, reason in dead:
            log.log(
                logging.ERROR if poison else logging.WARNING,
                "dead-lettering %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                reason,
            )
        await self._until_sent(dead)

    async def _until_sent(self, dead: list[tuple[ConsumerRecord[bytes, bytes], str]]) -> None:
        # Durable on the broker before the offsets that skip these records are committed, so
        # a broker outage is waited out like a database one (a copy sent twice, when an
        # answer was lost, is harmless: dead letters are read by people). Hand-written as
        # the worker's `_retrying` is: the stop event decides when to give up.
        assert self._producer is not None
        retries = 0
        while True:
            try:
                sent = [
                    await self._producer.send(
                        TOPIC_DEADLETTER,
                        record.value,
                        key=record.key,
                        headers=dead_letter_headers(record, reason),
                    )
                    for record, reason in dead
                ]
                await asyncio.gather(*sent)
                return
            except KafkaError as err:
                if self._stopping.is_set():
                    raise _Stopped(f"dead letters not sent while stopping: {err!r}") from err
                delay = retry_delay(retries)
                retries += 1
                log.warning(
                    "projector %s: dead letters not sent, retrying in %.1f s: %r",
                    self._name,
                    delay,
                    err,
                    extra=kafka_loss(err),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

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


def _ranges(fetched: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> str:
    return ", ".join(
        f"{tp.partition}@{rs[0].offset}..{rs[-1].offset}" for tp, rs in fetched.items() if rs
    )
