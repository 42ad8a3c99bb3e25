"""The benchmark's view of the system: a read_committed consumer of `baton.events`.

Every figure comes from here — the events' own times (`occurred_at`, the engine's clock) and
`caused_at` (the clock of the worker or API that issued the command behind the event) — never
from polling the API. The tap also tells the load generator when an instance has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

from aiokafka import TopicPartition

from services.adapters.avro import Codec, DecodeError
from services.adapters.kafka import TOPIC_EVENTS, new_consumer
from services.domain.protocol.events import Event

TERMINAL = frozenset({"InstanceSucceeded", "InstanceFailed", "InstanceStopped", "InstanceTimedOut"})


class EventTap:
    """Collects every event committed after `start()`, by instance."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.codec = Codec()
        self.by_instance: dict[str, list[Event]] = defaultdict(list)
        self.ended: dict[str, Event] = {}
        self.count = 0
        self.on_event: Callable[[Event], None] | None = None
        self._waiters: dict[str, asyncio.Future[Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer = new_consumer(bootstrap, None, fetch_max_wait_ms=20)

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(TOPIC_EVENTS, p) for p in range(self.partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: later events must not be skipped
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for r in records:
                    try:
                        e = self.codec.decode_event(r.value)
                    except DecodeError:
                        continue
                    self._add(e)

    def _add(self, e: Event) -> None:
        self.count += 1
        if e.instance_id is None:
            return
        self.by_instance[e.instance_id].append(e)
        if self.on_event is not None:
            self.on_event(e)
        if e.type in TERMINAL:
            self.ended[e.instance_id] = e
            waiter = self._waiters.pop(e.instance_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(e)

    async def wait_ended(self, instance_id: str, timeout: float) -> Event:
        """The instance's terminal event; TimeoutError after `timeout` seconds."""
        if instance_id in self.ended:
            return self.ended[instance_id]
        fut = self._waiters.setdefault(instance_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not within {timeout:g}s: {what}")
            await asyncio.sleep(interval)
