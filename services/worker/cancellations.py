"""Attempts the engine ended without the worker (a stop, its timeout, a lost heartbeat).

The worker follows the control topic; a cancelled attempt running here is killed, and one
that arrives later is never started. Neither is reported: the engine already decided its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer

from services.adapters.avro import Codec, DecodeError
from services.worker.runtimes.contract import StepOutcome

log = logging.getLogger(__name__)

# (instance id, step id, attempt): what the engine's reports and cancellations are keyed by.
AttemptKey = tuple[str, str, int]
# Attempts cancelled by the engine, remembered so a task fetched after its cancellation is
# not started at all. Bounded: only recent ones matter.
_CANCELLED_MEMORY = 10_000


class Cancellations:
    """The recently cancelled attempts, and the steps running here that a cancellation kills."""

    def __init__(self) -> None:
        self._cancelled: OrderedDict[AttemptKey, None] = OrderedDict()
        self._running: dict[AttemptKey, asyncio.Future[StepOutcome]] = {}

    def __contains__(self, key: AttemptKey) -> bool:
        return key in self._cancelled

    def cancel(self, key: AttemptKey, why: str) -> None:
        """Kill the attempt if it runs here, and never start it if it arrives later."""
        self._cancelled[key] = None
        while len(self._cancelled) > _CANCELLED_MEMORY:
            self._cancelled.popitem(last=False)
        step = self._running.get(key)
        if step is not None and not step.done():
            log.info("cancelling %s:%s:%d (%s)", *key, why)
            step.cancel()  # the runtime kills the step's processes

    def running(self, key: AttemptKey, step: asyncio.Future[StepOutcome]) -> None:
        """``step`` runs the attempt here until ``ended(key)``: a cancellation cancels it."""
        self._running[key] = step

    def ended(self, key: AttemptKey) -> None:
        self._running.pop(key, None)

    async def follow(self, control: AIOKafkaConsumer, codec: Codec) -> None:
        """Cancel every attempt the events on ``control`` end; runs until cancelled."""
        async for record in control:
            try:
                event = codec.decode_event(record.value or b"")
            except DecodeError as err:
                log.warning("undecodable control record at offset %d: %s", record.offset, err)
                continue
            step_id = getattr(event.payload, "step_id", None)
            attempt = getattr(event.payload, "attempt", None)
            if event.instance_id and isinstance(step_id, str) and isinstance(attempt, int):
                self.cancel((event.instance_id, step_id, attempt), event.type)
