"""The records of one shard transaction, as they go to Kafka, and the header that carries the
input position in the events themselves.

`send_outbox` writes inside a transaction the caller has begun (see `Shard.commit`, which
also decides whether the consumer group gets the offset): events to events partition p, the
rest to their topics. It returns once every record is delivered, or raises the first failure;
the caller's transaction then aborts, all or nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from services.adapters.kafka import (
    TOPIC_ARCHIVE,
    TOPIC_COMMANDS,
    TOPIC_CONTROL,
    TOPIC_DEADLETTER,
    TOPIC_DEFINITIONS,
    TOPIC_EVENTS,
    TOPIC_SNAPSHOTS,
    dead_letter_headers,
    derived_dead_letter_headers,
    task_topic,
)
from services.engine.outbox import Outbox

# The shard's own logger: these lines were the shard's before they moved here, and
# operators' filters know them by that name.
log = logging.getLogger("services.engine.shard")

# Header on an event: every commands offset below this value was decided in (or before) the
# transaction that wrote the event.
INPUT_OFFSET_HEADER = "baton-input-offset"

# Every topic a transaction may write besides the task topics.
BASE_TOPICS = frozenset(
    {
        TOPIC_EVENTS,
        TOPIC_CONTROL,
        TOPIC_COMMANDS,
        TOPIC_DEADLETTER,
        TOPIC_SNAPSHOTS,
        TOPIC_ARCHIVE,
        TOPIC_DEFINITIONS,
    }
)


async def send_outbox(
    producer: AIOKafkaProducer, partition: int, out: Outbox, next_offset: int | None
) -> int | None:
    """Send everything `out` holds in the open transaction, in order; the last event carries
    `next_offset` (when there is one) in INPUT_OFFSET_HEADER. Until every record is
    delivered; raises the first failure. Returns the last event's offset (None: no event)."""
    futures = _Deliveries()
    await _send_events(producer, partition, out, next_offset, futures)
    events = len(out.events)
    for digest, text in out.definitions:  # what the events name by hash, in this transaction
        futures.append(
            await producer.send(TOPIC_DEFINITIONS, text.encode(), key=digest.encode(), partition=0)
        )
    for e, data in out.cancellations:
        futures.append(await producer.send(TOPIC_CONTROL, data, key=e.key.encode()))
    for t, data in out.tasks:
        futures.append(await producer.send(task_topic(t.queue), data, key=t.instance_id.encode()))
    for target, key, data in out.commands:
        futures.append(await producer.send(TOPIC_COMMANDS, data, key=key, partition=target))
    for key, data, reason in out.dead_derived:
        futures.append(
            await producer.send(
                TOPIC_DEADLETTER,
                data,
                key=key,
                headers=derived_dead_letter_headers(partition, reason),
            )
        )
    for record, reason in out.dead:
        log.warning("p%d offset %d dead-lettered: %s", partition, record.offset, reason)
        futures.append(
            await producer.send(
                TOPIC_DEADLETTER,
                record.value,
                key=record.key,
                headers=dead_letter_headers(record, reason),
            )
        )
    await futures.wait()
    # The events went first, in order: the last of them has the highest offset.
    return futures[events - 1].result().offset if events else None


async def _send_events(
    producer: AIOKafkaProducer,
    partition: int,
    out: Outbox,
    next_offset: int | None,
    futures: _Deliveries,
) -> None:
    last = len(out.events) - 1
    for i, (e, data) in enumerate(out.events):
        headers = None
        if i == last and next_offset is not None:
            headers = [(INPUT_OFFSET_HEADER, str(next_offset).encode())]
        futures.append(
            await producer.send(
                TOPIC_EVENTS,
                data,
                key=e.key.encode(),
                partition=partition,
                timestamp_ms=e.occurred_at // 1000,
                headers=headers,
            )
        )


def input_offset(headers: Sequence[tuple[str, bytes]] | None) -> int | None:
    """The input position an event's INPUT_OFFSET_HEADER records, if it has one."""
    for key, value in headers or ():
        if key == INPUT_OFFSET_HEADER:
            return int(value)
    return None


class _Deliveries(list["asyncio.Future[Any]"]):
    """The delivery futures of one transaction's records. When one fails (the producer was
    fenced, the transaction aborted) the others fail too, after the commit has given up on
    them: each one's exception is retrieved as it lands, or asyncio would log every one of
    them ("Future exception was never retrieved", a flood at each rebalance)."""

    def append(self, future: asyncio.Future[Any]) -> None:
        future.add_done_callback(_retrieve)
        super().append(future)

    async def wait(self) -> None:
        """Until every record is delivered; raises the first failure."""
        for future in self:
            await future


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
