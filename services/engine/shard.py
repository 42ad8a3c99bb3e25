"""One engine shard: the live state of commands partition p, and its way out.

The shard owns the instances and workflows whose keys hash to partition p. For each input
it runs the pure decider, then writes the decided events (events partition p), the tasks
they imply and the consumed input offsets in ONE Kafka transaction. Its transactional id is
fixed per partition, so a new owner's `init_transactions` fences any zombie of the old one.

Here: the state, deciding, and the transaction's bookkeeping (`commit`, `checkpoint`). Beside
it: the recovery fold (fold.py), attempts' liveness (liveness.py), outputs as bytes
(encoding.py) and the transaction's records (transaction.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.adapters.avro import Codec, DecodeError
from services.adapters.avro.snapshots import SnapshotCodec
from services.adapters.definitions import DefinitionReader
from services.adapters.kafka import (
    TOPIC_COMMANDS,
    TOPIC_EVENTS,
    partition_for,
    task_topic,
    track_topics,
)
from services.domain.decider import (
    AGGREGATES,
    INSTANCE,
    Aggregate,
    Decision,
    InstanceState,
    aggregate_of,
    aggregate_of_event,
    running_on_workers,
)
from services.domain.kernel.errors import Rejected
from services.domain.protocol.commands import (
    Command,
    ReportAttemptHeartbeat,
)
from services.domain.protocol.events import Event
from services.domain.protocol.routing import command_key
from services.engine.encoding import (
    dead_letter_derived,
    encode_bounded,
    encode_events,
    envelope,
)
from services.engine.fold import fold_events
from services.engine.liveness import Liveness
from services.engine.outbox import Outbox
from services.engine.recall import (
    ARCHIVE_PER_FLUSH,
    Archive,
    ArchivedStateUnreadable,
    ArchiveReader,
)
from services.engine.snapshots import (
    SNAPSHOT_INTERVAL_S,
    Capture,
    Written,
    read_snapshot,
    send_snapshot,
)
from services.engine.timers import Timers
from services.engine.transaction import BASE_TOPICS, send_outbox

log = logging.getLogger(__name__)

# How far behind the engine's real position the consumer group's committed offset may fall
# (it is for operators: recovery reads the position from the events).
GROUP_COMMIT_INTERVAL_S = 1.0
# A shard idle this long gets a checkpoint transaction of its own when its group offset trails.
IDLE_AFTER_S = 0.2


class Shard:
    def __init__(
        self,
        partition: int,
        producer: AIOKafkaProducer,
        codec: Codec,
        group_id: str,
        heartbeat_timeout_s: float,
        ensure_queue: Callable[[str], Any],
        partition_count: int,
        snapshot_codec: SnapshotCodec | None = None,
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
    ) -> None:
        self.partition = partition
        self.partition_count = partition_count
        self.producer = producer
        self.codec = codec
        self.group_id = group_id
        self.ensure_queue = ensure_queue
        # Every aggregate of the partition, by aggregate type, then by key; and each one's
        # next deadline (an instance's timeouts, a workflow's next trigger time).
        self.states: dict[str, dict[str, Any]] = {a.name: {} for a in AGGREGATES}
        self._timers: dict[str, Timers] = {a.name: Timers() for a in AGGREGATES}
        self.instances: dict[str, InstanceState] = self.states[INSTANCE.name]
        # Liveness of attempts running on workers (see liveness.py); `last_seen` is its table
        # of last reports and heartbeats, which deciding a heartbeat refreshes directly.
        self.liveness = Liveness(heartbeat_timeout_s)
        self.last_seen = self.liveness.last_seen
        # The next commands offset to decide: the offset the last successful transaction
        # committed (we are its only writer while we hold the transactional id), or None
        # when the group has none yet. The consumer's own committed-offset cache does not
        # see offsets committed through the producer, so this is the position of record.
        self.position: int | None = None
        # The input position recorded in the events partition itself (INPUT_OFFSET_HEADER),
        # as of the last load; see commit.
        self.logged_position: int | None = None
        # The input position as last committed to the consumer group (it may trail
        # `position`: see commit and checkpoint), and when; when the last transaction ended.
        self.group_position: int | None = None
        self._group_committed_at = time.monotonic()
        self._committed_at = -math.inf
        # Decided but not yet committed (see Committers.enqueue): the outbox the next transaction
        # writes, the input position it commits, and the task committing the one before.
        self.pending: Outbox | None = None
        self.pending_offset: int | None = None
        self.committer: asyncio.Task[None] | None = None
        # The commands offset after the last input decided here (None: none yet, read from
        # `position`); an input below it is never decided twice.
        self.decided_to: int | None = None
        # Set when a transaction or an archive read failed: nothing more is decided on this
        # shard, and the engine drops it (fenced) or rebuilds it from the log.
        self.failed: BaseException | None = None
        # The topics this shard's producer keeps in its metadata (see track_topics).
        self._tracked: set[str] = set()
        self.events_tp = TopicPartition(TOPIC_EVENTS, partition)
        self.commands_tp = TopicPartition(TOPIC_COMMANDS, partition)
        # Snapshots (see snapshots.py; None or an interval of 0: none written or read): the
        # aggregates changed since the last flush, by (aggregate type, key); an events offset
        # at or below the next event this shard writes; when the next flush is due.
        self.snapshot_codec = snapshot_codec
        self.snapshot_interval_s = snapshot_interval_s if snapshot_codec is not None else 0.0
        self.dirty: set[tuple[str, str]] = set()
        self.definitions: dict[str, str] = {}  # the definitions the snapshot holds, by hash
        # The hashes baton.definitions holds, as this shard has read it (its fold) and written
        # it (its transactions sent them: a failed one rebuilds the shard, and this with it).
        self.logged_definitions: set[str] = set()
        # Finished aggregates out of memory (see archive.py, recall.py).
        self.archive = Archive(
            partition, snapshot_codec or SnapshotCodec(), self.definitions, self.states
        )
        self.events_end = 0
        self._snapshot_due_at = time.monotonic() + self.snapshot_interval_s
        # What the last load did: events folded, and snapshot records read (None: no
        # snapshot was used).
        self.folded = 0
        self.snapshot_records: int | None = None

    def broken(self) -> bool:
        """A transaction or an archive read failed: decide nothing more here (see `failed`)."""
        return self.failed is not None

    # --- recovery ------------------------------------------------------------------------

    async def load(self, bootstrap: str, now: int) -> int:
        """Restore the newest usable snapshot of p, if any, then fold the committed events
        after it (all of them without one; see fold_events: it yields to the loop, and a stop
        cancels it, having written nothing); then set the timers, and count each attempt
        running on a worker as heard of when the snapshot last saw it. Returns the number of
        events folded."""
        start, covered = 0, None
        seen: dict[tuple[str, str, int], int] = {}
        if self.snapshot_codec is not None and self.snapshot_interval_s > 0:
            restored = await read_snapshot(bootstrap, self.partition, self.snapshot_codec)
            if restored is not None:
                for name, states in restored.states.items():
                    self.states[name].update(states)
                start = restored.checkpoint.events_from
                self.definitions.update(restored.definitions)
                self.archive.restore(restored.segments)
                covered = restored.checkpoint.commands_offset
                seen = {(i, s, a): t for i, s, a, t in restored.checkpoint.attempts_seen}
                self.snapshot_records = restored.records
        self.archive.reader = ArchiveReader(bootstrap, self.partition)
        reader = DefinitionReader(bootstrap)
        count, logged, self.events_end = await fold_events(
            bootstrap, self.events_tp, self.codec, self._apply_recovered, start, reader.resolve
        )
        self.logged_definitions.update(reader.known)
        self.dirty |= await self.archive.unpark()
        self.folded = count
        positions = [p for p in (logged, covered) if p is not None]
        self.logged_position = max(positions) if positions else None
        for aggregate in AGGREGATES:
            for key, state in self.states[aggregate.name].items():
                self._schedule(aggregate, key, state)
        running = (
            (iid, sid, attempt)
            for iid, state in self.instances.items()
            for sid, attempt in running_on_workers(state)
        )
        self.liveness.restore(running, seen, now)
        return count

    # --- the fold, kept in memory ----------------------------------------------------------

    def _apply_recovered(self, event: Event) -> None:
        """Fold one event of the log, unless the restored state already holds it (an event
        of the snapshot's own transaction, or before it). What it changes is written at the
        next flush: the snapshot on record is older than memory from here on."""
        aggregate = aggregate_of_event(event)
        states = self.states[aggregate.name]
        key = aggregate.event_key(event)
        state = states.get(key)
        if self.archive.park(aggregate, key, state, event):
            return  # archived, and revived after the snapshot: applied after the fold
        if state is not None and event.seq <= state.seq:
            return
        states[key] = aggregate.evolve(state, event)
        self.dirty.add((aggregate.name, key))

    async def recall(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Read back the archived instances these input records name (an instance command's
        record key is its instance id), so they are decided on the state the whole log
        gives. The last await before they are decided: a flush meanwhile leaves them be."""
        keys = (r.key.decode(errors="replace") for r in records if isinstance(r.key, bytes))
        try:
            await self.archive.recall(INSTANCE.name, keys)
        except Exception as err:  # the broker or a timeout (a record unreadable is noted)
            log.warning(
                "p%d: reading the archive failed: %r; the shard is rebuilt", self.partition, err
            )
            self.failed = err

    def _schedule(self, aggregate: Aggregate[Any], key: str, state: Any) -> None:
        if aggregate.timer is not None:
            self._timers[aggregate.name].schedule(key, aggregate.deadline(state))

    def next_due(self) -> int | None:
        dues = (t.next_due() for t in self._timers.values())
        return min((d for d in dues if d is not None), default=None)

    # --- deciding ------------------------------------------------------------------------

    def _handle(self, cmd: Command, now: int, out: Outbox, caused_at: int | None = None) -> None:
        """Decide one command, then the commands its decision sends to other aggregates of
        this partition, in order, in this same batch (and so the same transaction). Commands
        for other partitions go out in the transaction, to the commands topic.

        A failure of the input itself raises (the caller dead-letters the input, and memory
        is as it was). A failure of a command derived here is dead-lettered with its reason:
        the decisions before it stand, and it is never lost silently."""
        local: deque[Command] = deque([cmd])
        first = True
        while local:
            c = local.popleft()
            try:
                sent = self._decide_one(c, now, out, caused_at)
            except Exception as err:
                if first:
                    raise
                if not isinstance(err, Rejected):
                    log.exception("p%d: deciding derived %s failed", self.partition, c)
                self._dead_derived(c, now, caused_at, out, f"{type(err).__name__}: {err}")
                continue
            first = False
            local.extend(sent)

    def _decide_one(
        self, cmd: Command, now: int, out: Outbox, caused_at: int | None
    ) -> list[Command]:
        """Decide one command; returns the commands it sends to aggregates of this partition.
        Memory changes only once everything it produces is encoded, so a command that fails
        anywhere leaves the shard exactly as it was."""
        if isinstance(cmd, ReportAttemptHeartbeat):
            # Liveness only: noted outside the fold, no transition (see last_seen).
            attempt = (cmd.instance_id, cmd.step_id, cmd.attempt)
            if attempt in self.last_seen:
                self.last_seen[attempt] = now
            return []
        aggregate = aggregate_of(cmd)
        states = self.states[aggregate.name]
        key = aggregate.command_key(cmd)
        state = states.get(key)
        if state is None and aggregate.evictable is not None:
            self.archive.check_readable(aggregate.name, key)  # dead-lettered if not
            if self.archive.holds(aggregate.name, key):
                # Archived, and not recalled: this command was derived here (or by a timer),
                # so no read could come first. It goes through the commands topic, in this
                # transaction, and is decided once `recall` has read its aggregate back.
                envelope = self._envelope(cmd, now, caused_at)
                data = self._encode(self.codec.encode_command, envelope)
                out.commands.append((self.partition, command_key(cmd).encode(), data))
                return []
        d: Decision[Any] = aggregate.decide(state, cmd, now, caused_at)
        if not d.events:
            local, remote = self._route(d.sent, now, caused_at)
            out.commands.extend(remote)
            return local
        encoded, definitions, local, remote = self._outputs(d.events, d.sent, now, caused_at)
        tasks = [(t, self._encode(self.codec.encode_task, t)) for t in d.tasks]
        cancelled = {id(e) for e in d.cancellations}
        # Nothing below may fail: memory now moves to the decided state.
        states[key] = d.state
        self.dirty.add((aggregate.name, key))
        self.archive.recalled.discard((aggregate.name, key))
        for e in d.events:
            if e.instance_id is not None:
                self._track_liveness(e.instance_id, e, now)
        self._schedule(aggregate, key, d.state)
        out.events.extend(encoded)
        out.definitions.extend(definitions)
        self.logged_definitions.update(digest for digest, _ in definitions)
        out.cancellations.extend(pair for pair in encoded if id(pair[0]) in cancelled)
        out.tasks.extend(tasks)
        out.commands.extend(remote)
        return local

    def _outputs(
        self, events: list[Event], sent: list[Command], now: int, caused_at: int | None
    ) -> tuple[
        list[tuple[Event, bytes]],
        list[tuple[str, str]],
        list[Command],
        list[tuple[int, bytes, bytes]],
    ]:
        """A decision's events encoded as the log keeps them, the definitions they name that
        baton.definitions lacks (encoding.encode_events), and its commands routed: all that
        may fail, done before memory moves."""
        encoded, definitions = encode_events(self.codec, events, self.logged_definitions)
        return (encoded, definitions, *self._route(sent, now, caused_at))

    def _route(
        self, sent: list[Command], now: int, caused_at: int | None
    ) -> tuple[list[Command], list[tuple[int, bytes, bytes]]]:
        """Split sent commands into this partition's (decided next) and the others, encoded
        for the commands topic: (partition, key, value)."""
        local: list[Command] = []
        remote: list[tuple[int, bytes, bytes]] = []
        for c in sent:
            key = command_key(c)
            partition = partition_for(key, self.partition_count)
            if partition == self.partition:
                local.append(c)
            else:
                data = self._encode(self.codec.encode_command, self._envelope(c, now, caused_at))
                remote.append((partition, key.encode(), data))
        return local, remote

    # How a decision's outputs become records (see encoding.py).
    _encode = staticmethod(encode_bounded)
    _envelope = staticmethod(envelope)

    def _dead_derived(
        self, c: Command, now: int, caused_at: int | None, out: Outbox, reason: str
    ) -> None:
        dead_letter_derived(self.codec, self.partition, c, now, caused_at, out, reason)

    def _track_liveness(self, iid: str, e: Event, now: int) -> None:
        self.liveness.track(iid, e, now)

    def _due_commands(self, now: int, lagging: bool) -> list[Command]:
        cmds: list[Command] = []
        for aggregate in AGGREGATES:
            if aggregate.timer is not None:
                due = self._timers[aggregate.name].pop_due(now)
                cmds.extend(aggregate.timer(key) for key in due)
        if lagging:
            # Heartbeats may be waiting in the unread input: silence is not evidence yet.
            return cmds
        cmds.extend(self.liveness.expired(now))
        return cmds

    def decide_batch(
        self, records: Sequence[ConsumerRecord[Any, Any]], now: int, lagging: bool = False
    ) -> Outbox:
        """Decide a batch of commands and whatever timers are due. `lagging`: more input is
        already waiting on the partition (no heartbeat expiry then)."""
        out = Outbox()
        for record in records:
            try:
                envelope = self.codec.decode_command(record.value)
                self._handle(envelope.payload, now, out, envelope.issued_at)
            except DecodeError as err:
                out.dead.append((record, f"undecodable command: {err}"))
            except Rejected as err:
                out.dead.append((record, f"rejected: {err}"))
            except ArchivedStateUnreadable as err:
                out.dead.append((record, f"unreadable: {err}"))
            except Exception as err:
                # A bug or an input no rule foresaw: the partition must not stop on it.
                log.exception("p%d offset %d: deciding failed", self.partition, record.offset)
                out.dead.append((record, f"internal error: {type(err).__name__}: {err}"))
        for cmd in self._due_commands(now, lagging):
            try:
                self._handle(cmd, now, out)
            except Exception:
                # Its timer is already off the heap: the instance waits for its next input
                # rather than failing the same way on every loop.
                log.exception("p%d: %s failed; left as it is", self.partition, cmd)
        return out  # (each decided instance's timer was set as it was decided)

    # --- the one transaction -------------------------------------------------------------

    def snapshot_due(self) -> bool:
        """A flush is due: snapshots are on, some state changed, the interval has passed."""
        return (
            self.snapshot_interval_s > 0
            and bool(self.dirty)
            and time.monotonic() >= self._snapshot_due_at
        )

    def capture_due(self, next_offset: int | None) -> Capture | None:
        """The states to snapshot in the transaction about to commit `next_offset`, when a
        flush is due: taken as the committer takes its outbox, so they are exactly the states
        that outbox and the transactions before it lead to."""
        if not self.snapshot_due():
            return None
        states, archived = self.archive.split(self.dirty)
        self.dirty = set()
        offset = next_offset if next_offset is not None else (self.position or 0)
        seen = tuple((i, s, a, t) for (i, s, a), t in self.last_seen.items())
        return Capture(states, self.events_end, offset, archived, seen)

    async def commit(
        self, out: Outbox, next_offset: int | None, capture: Capture | None = None
    ) -> None:
        """Events, tasks, dead letters and the input position: all or nothing.

        The input position travels in the transaction in one of two ways. When the batch
        decided events, the last one carries it in a header (INPUT_OFFSET_HEADER): `load`
        reads it back, so the usual transaction needs no AddOffsetsToTxn and TxnOffsetCommit
        round trips. Otherwise it is committed to the consumer group. The group also gets it
        at least once a second, in the next transaction, and an idle shard gets a `checkpoint`
        of its own: for operators' lag, and so an engine that reads only the group's offset
        (an older version, a rollback) would not decide anything twice."""
        if not out and next_offset is None and capture is None:
            return
        await self._track_topics(out)
        clock = time.monotonic()
        to_group = next_offset is not None and (
            not out.events
            or (
                next_offset != self.group_position
                and clock - self._group_committed_at >= GROUP_COMMIT_INTERVAL_S
            )
        )
        written: Written | None = None
        async with self.producer.transaction():
            last_event = await send_outbox(self.producer, self.partition, out, next_offset)
            if capture is not None and self.snapshot_codec is not None:
                written = await send_snapshot(
                    self.producer,
                    self.partition,
                    self.snapshot_codec,
                    capture,
                    self.definitions,
                    self.archive.segments,
                )
                for future in written.deliveries if written is not None else ():
                    await future
            if to_group:
                await self.producer.send_offsets_to_transaction(
                    {self.commands_tp: next_offset}, self.group_id
                )
        if last_event is not None:
            self.events_end = last_event + 1
        if capture is not None:
            if written is not None:
                self._archived(capture, written)
            else:  # skipped: those states go in the next flush
                self.dirty.update(capture.states)
                self.dirty.update(capture.archived)
        if next_offset is not None:
            self.position = next_offset
        self._committed_at = time.monotonic()
        if to_group:
            self.group_position = next_offset
            self._group_committed_at = clock

    def _archived(self, capture: Capture, written: Written) -> None:
        """A flush committed: the states it archived leave memory (unless a decision changed
        one since: it is written again at the next flush), the index takes their entries."""
        self.archive.committed(capture.archived, written.archived)
        due = 0.0 if len(capture.archived) >= ARCHIVE_PER_FLUSH else self.snapshot_interval_s
        self._snapshot_due_at = time.monotonic() + due

    async def close(self) -> None:
        """Stop the shard's producer and its archive reader."""
        try:
            await self.producer.stop()
        finally:
            await self.archive.close()

    async def _track_topics(self, out: Outbox) -> None:
        """Every topic `out` writes exists (a new queue's is created) and is in the producer's
        metadata: before the transaction, while no batch of this producer is pending."""
        queues = {t.queue for t, _ in out.tasks}
        for queue in queues:
            await self.ensure_queue(queue)
        untracked = ({task_topic(q) for q in queues} | BASE_TOPICS) - self._tracked
        if untracked:
            await track_topics(self.producer, sorted(untracked))
            self._tracked |= untracked

    def checkpoint_due(self, clock: float) -> bool:
        """The group's offset trails, has not moved for a while, and the shard is idle."""
        return (
            self.position is not None
            and self.position != self.group_position
            and clock - self._group_committed_at >= GROUP_COMMIT_INTERVAL_S
            and clock - self._committed_at >= IDLE_AFTER_S
        )

    async def checkpoint(self) -> None:
        """A transaction of the input position alone, into the consumer group."""
        position = self.position
        if position is None or position == self.group_position:
            return
        async with self.producer.transaction():
            await self.producer.send_offsets_to_transaction(
                {self.commands_tp: position}, self.group_id
            )
        self.group_position = position
        self._group_committed_at = self._committed_at = time.monotonic()


def now_micros() -> int:
    return time.time_ns() // 1000
