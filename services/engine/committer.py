"""Each shard's committer: the task that turns what the loop decided into transactions, one
at a time, while the loop goes on deciding.

What a shard decided while its transaction was in flight accumulates (`Shard.pending`) and
goes out in the next one, together: under load that is group commit. A committer stops at
the first failure and marks the shard `failed`; the ownership rebuilds or drops it (see
Ownership.tend_failed). Committers never take the engine's lock, so flushing them may be
awaited while holding it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from services.engine.outbox import Outbox
from services.engine.shard import Shard
from services.engine.stats import LoopStats

# The engine's own logger: these lines were the engine's before they moved here, and
# operators' filters know them by that name.
log = logging.getLogger("services.engine.engine")

# Under sustained load only, how long a shard's committer waits to gather a larger transaction.
TRANSACTION_LINGER_S = 0.005  # the default of BATON_TRANSACTION_LINGER_MS (EngineSettings)


class Committers:
    def __init__(
        self, stats: LoopStats, transaction_linger_s: float = TRANSACTION_LINGER_S
    ) -> None:
        self.stats = stats
        # Under sustained load only, how long a committer waits to gather a larger transaction.
        self.transaction_linger_s = transaction_linger_s
        # Transactions failed in a row, by partition: the rebuild's back-off grows with it.
        self.failures: dict[int, int] = {}

    def enqueue(self, shard: Shard, out: Outbox, next_offset: int | None) -> None:
        """Hand the shard's committer what a batch decided (and the input position after
        it); starts the committer when none is running."""
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
        since the last one began. Stops at the first failure (see Ownership.tend_failed)."""
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
            # In the same step as taking the outbox: the states exactly as it leaves them.
            capture = shard.capture_due(next_offset)
            t0 = time.monotonic()
            try:
                await shard.commit(out, next_offset, capture)
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
            self.failures.pop(shard.partition, None)
            backlog = shard.pending is not None

    def checkpoint_idle(self, shards: Iterable[Shard]) -> None:
        """Idle shards whose group offset trails get a checkpoint (see Shard.commit); those
        with a snapshot due get a transaction that writes it (see Shard.capture_due), so the
        tail a recovery folds stays short even when the input stops."""
        clock = time.monotonic()
        for shard in shards:
            busy = shard.committer is not None and not shard.committer.done()
            if busy or shard.broken():
                continue
            if shard.checkpoint_due(clock):
                shard.committer = asyncio.create_task(self._checkpoint(shard))
            elif shard.snapshot_due():
                self.enqueue(shard, Outbox(), None)

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

    @staticmethod
    async def checkpoint_all(shards: Iterable[Shard]) -> None:
        """Every shard's group offset up to its position: before partitions move and on a
        clean stop, so whoever reads the group next (any version) starts exactly there.
        Call after flush, under the lock."""

        async def one(shard: Shard) -> None:
            try:
                await shard.checkpoint()
            except Exception:
                # The position is in the events' headers anyway; only the group trails.
                log.warning("p%d: checkpoint failed", shard.partition, exc_info=True)

        await asyncio.gather(*(one(s) for s in shards if not s.broken()))

    @staticmethod
    async def settle(shard: Shard) -> None:
        """Until everything decided for the shard is committed, or its transaction failed."""
        while shard.committer is not None and not shard.committer.done():
            await asyncio.wait((shard.committer,))

    async def flush(self, shards: Iterable[Shard]) -> None:
        """Until every shard's decided batches are committed (or failed). Committers never
        take the lock, so this may be awaited while holding it."""
        for shard in list(shards):
            await self.settle(shard)

    async def flush_and_checkpoint(self, shards: Iterable[Shard]) -> None:
        """flush, then checkpoint_all (`shards` is iterated anew by each: pass a live view)."""
        await self.flush(shards)
        await self.checkpoint_all(shards)
