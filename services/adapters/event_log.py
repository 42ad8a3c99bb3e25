"""Reading the whole event log, as an auditor or a benchmark does (read_committed)."""

from __future__ import annotations

import contextlib

from services.adapters.avro import Codec, DecodeError
from services.adapters.kafka import TOPIC_EVENTS, new_consumer
from services.domain.protocol.events import Event


async def read_all_events(bootstrap: str, codec: Codec | None = None) -> list[Event]:
    """Every committed event, from the beginning to the end at the time of the call.
    Records that are not Baton events (garbage some tests write on purpose) are skipped."""
    codec = codec or Codec()
    consumer = new_consumer(bootstrap, None, TOPIC_EVENTS)
    await consumer.start()
    try:
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(list(consumer.assignment()))
        events: list[Event] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    with contextlib.suppress(DecodeError):
                        events.append(codec.decode_event(r.value))
        return events
    finally:
        await consumer.stop()
