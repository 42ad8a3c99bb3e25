"""The task offsets the worker commits, for at-least-once delivery.

A partition's committed offset never passes a task that has not finished (``PartitionOffsets``);
``OffsetCommits`` commits what every assigned partition may commit, coalesced, and hands a
revoked partition's tasks over to its next owner.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.adapters.logs import kafka_loss

log = logging.getLogger(__name__)


class PartitionOffsets:
    """The tasks of one partition not yet finished, in offset order.

    The committable position is the lowest unfinished offset, or one past the highest
    offset seen when all are finished.
    """

    __slots__ = ("committed", "next_offset", "pending")

    def __init__(self) -> None:
        self.pending: dict[int, bool] = {}  # offset -> finished; insertion order = offset order
        self.next_offset = -1
        self.committed = -1

    def start(self, offset: int) -> None:
        self.pending[offset] = False
        self.next_offset = offset + 1

    def finish(self, offset: int) -> bool:
        """Mark ``offset`` finished; True if the committable position moved."""
        if offset not in self.pending:
            return False
        self.pending[offset] = True
        if next(iter(self.pending)) != offset:
            return False
        done = []
        for off, finished in self.pending.items():
            if not finished:
                break
            done.append(off)
        for off in done:
            del self.pending[off]
        return True

    def committable(self) -> int:
        return next(iter(self.pending)) if self.pending else self.next_offset


class OffsetCommits:
    """The offset trackers of the partitions ``consumer`` is assigned, and their commits.

    ``start`` an offset when its task is fetched, ``finish`` it when the task is done (reported,
    skipped or dead-lettered); ``commit_loop`` commits soon after a position moves.
    """

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._commit_wanted = asyncio.Event()

    def start(self, tp: TopicPartition, offset: int) -> None:
        offsets = self._offsets.get(tp)
        if offsets is None:
            offsets = self._offsets[tp] = PartitionOffsets()
        offsets.start(offset)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        # The tracker that owns tp now (a rebalance may have replaced it, or taken tp away).
        offsets = self._offsets.get(tp)
        if offsets is not None and offsets.finish(offset):
            self._commit_wanted.set()

    async def commit_loop(self) -> None:
        """Runs until cancelled. One commit covers every partition that moved since the last
        one, so commits coalesce under load instead of costing a round trip per task."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self.commit()

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit the committable position of ``partitions`` (default: all assigned) that
        moved. A failed commit is logged, never raised: a later one, or the partition's next
        owner re-running the tasks, covers it."""
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

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.commit(revoked & self._consumer.assignment())
        # Tasks of these partitions still running will report (harmlessly, if also re-run by
        # the partition's next owner), but no longer move any offset.
        for tp in revoked:
            self._offsets.pop(tp, None)


class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what a partition may commit before it goes to another worker."""

    def __init__(self, commits: OffsetCommits) -> None:
        self._commits = commits

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._commits.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
