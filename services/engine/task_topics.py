"""The task topics of the queues the engine's shards send tasks to, created on first use."""

from __future__ import annotations

import asyncio
import logging

from services.adapters.kafka import ensure_topics, task_topic

# The engine's own logger: this line was the engine's before it moved here.
log = logging.getLogger("services.engine.engine")


class TaskTopics:
    def __init__(self, bootstrap: str, partition_count: int) -> None:
        self.bootstrap = bootstrap
        self.partition_count = partition_count
        # Each queue's creation, done or under way; a failed one is forgotten.
        self._queues: dict[str, asyncio.Future[None]] = {}

    async def ensure(self, queue: str) -> None:
        """Until the queue's task topic exists with leaders: created once, however many shards
        ask at the same moment (a failure is tried again by the next one to ask)."""
        ready = self._queues.get(queue)
        if ready is None:
            ready = self._queues[queue] = asyncio.ensure_future(self._create(queue))
        try:
            # One shard's cancellation must not cancel the creation the others wait for.
            await asyncio.shield(ready)
        except Exception:
            if self._queues.get(queue) is ready:
                del self._queues[queue]
            raise

    async def _create(self, queue: str) -> None:
        await ensure_topics(self.bootstrap, self.partition_count, [queue])
        log.info("task topic %s ready", task_topic(queue))
