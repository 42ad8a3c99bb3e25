"""The projector's dead letters: records it skips, sent to the dead-letter topic with why."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from services.adapters.kafka import TOPIC_DEADLETTER, dead_letter_headers
from services.adapters.logs import kafka_loss
from services.adapters.postgres import retry_delay

# Logged under the projector loop's logger, as before this module was split from it: log
# filters and readers key on that name.
log = logging.getLogger("services.projector.consumer")

DeadLetter = tuple[ConsumerRecord[bytes, bytes], str]


class StoppedWhileSending(Exception):
    """The projector was asked to stop while a batch waited on the broker: nothing of it is
    committed, and the next start reads it again."""


class DeadLetters:
    """Sends skipped records to `TOPIC_DEADLETTER` through `producer` (started and stopped by
    the owner), retrying through a broker outage until `stopping` is set."""

    def __init__(self, producer: AIOKafkaProducer, stopping: asyncio.Event, name: str) -> None:
        self._producer = producer
        self._stopping = stopping
        self._name = name

    async def send(self, dead: list[DeadLetter], *, poison: bool = False) -> None:
        """Send each record with its reason; returns once every one is on the broker, or raises
        `StoppedWhileSending`. Logged once per record (at ERROR for a poison event: the log holds
        an event the read models will never show)."""
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

    async def _until_sent(self, dead: list[DeadLetter]) -> None:
        # Durable on the broker before the offsets that skip these records are committed, so
        # a broker outage is waited out like a database one (a copy sent twice, when an
        # answer was lost, is harmless: dead letters are read by people). Hand-written as
        # the worker's `_retrying` is: the stop event decides when to give up.
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
                    raise StoppedWhileSending(
                        f"dead letters not sent while stopping: {err!r}"
                    ) from err
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
