"""Sending what the worker reports — attempt reports, heartbeats, dead letters — through
Kafka outages.

A report that cannot be sent is retried until it is, or until the worker stops: then the
send gives up (``GaveUp``) and the task's offset stays uncommitted, so the task is re-run
rather than lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from services.adapters.avro import Codec
from services.adapters.kafka import TOPIC_DEADLETTER, dead_letter_headers
from services.adapters.logs import kafka_loss
from services.adapters.publish import send_command, send_envelopes
from services.domain.protocol.commands import CommandEnvelope, ReportAttemptHeartbeat
from services.domain.protocol.tasks import Task

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 5.0


class GaveUp(Exception):
    """A send abandoned because the worker is stopping; the task is left to be re-run."""


class Reporter:
    """The worker's producer side. ``stopping`` is the worker's stop event: once it is set, a
    failing send raises ``GaveUp`` instead of retrying."""

    def __init__(
        self, producer: AIOKafkaProducer, codec: Codec, worker_id: str, stopping: asyncio.Event
    ) -> None:
        self._producer = producer
        self._codec = codec
        self._worker_id = worker_id
        self._stopping = stopping

    async def send(self, *envelopes: CommandEnvelope) -> None:
        """Reports, in order, in one produce request. A retry after a partial failure sends
        some again: the engine ignores a report it has already decided."""

        async def send() -> None:
            await send_envelopes(self._producer, self._codec, list(envelopes))

        what = " + ".join(type(e.payload).__name__ for e in envelopes)
        await _retrying(f"report {what}", self._stopping, send)

    async def heartbeat(self, task: Task) -> None:
        """One heartbeat of the task's attempt, sent once: never retried, never raises."""
        hb = ReportAttemptHeartbeat(task.instance_id, task.step_id, task.attempt, self._worker_id)
        try:
            await send_command(self._producer, self._codec, hb)
        except KafkaError as err:
            # One missed heartbeat is harmless; the next one may get through.
            log.warning("heartbeat for %s not sent: %r", task.task_id, err, extra=kafka_loss(err))

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """The malformed task record, as it is, to the dead-letter topic with the reason."""
        log.warning(
            "malformed task at %s[%d]@%d sent to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            TOPIC_DEADLETTER,
            reason,
        )
        headers = dead_letter_headers(record, reason)

        async def send() -> None:
            await self._producer.send_and_wait(
                TOPIC_DEADLETTER, record.value, key=record.key, headers=headers
            )

        await _retrying("dead-letter", self._stopping, send)


async def _retrying(
    what: str, stopping: asyncio.Event, attempt: Callable[[], Awaitable[None]]
) -> None:
    """Retry a send through Kafka outages: a result lost here would be re-run, not lost, but
    re-running a long step is costly. Gives up only when the worker is stopping."""
    delay = 0.1
    while True:
        try:
            await attempt()
            return
        except KafkaError as err:
            if stopping.is_set():
                raise GaveUp(f"{what} failed while stopping: {err!r}") from err
            log.warning("%s failed, retrying in %.1fs: %r", what, delay, err, extra=kafka_loss(err))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_SECONDS)
