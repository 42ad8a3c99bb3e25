"""Recovery's read: every committed event of one events partition, from the start or from a
snapshot's checkpoint, folded into a shard's memory by the shard's own `apply`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

from services.adapters.avro import Codec, DecodeError
from services.adapters.definitions import names_its_definition
from services.adapters.kafka import started_consumer
from services.domain.kernel.errors import CorruptLog
from services.domain.protocol.events import Event
from services.engine.transaction import input_offset

# The longest a fold runs before it lets the loop serve the rest (heartbeats, signals, the
# partitions already recovered); checked every FOLD_CHECK_EVERY events.
FOLD_SLICE_S = 0.002
FOLD_CHECK_EVERY = 64


async def fold_events(
    bootstrap: str,
    events_tp: TopicPartition,
    codec: Codec,
    apply: Callable[[Event], None],
    start: int = 0,
    resolve: Callable[[Event], Awaitable[Event]] | None = None,
) -> tuple[int, int | None, int]:
    """Hand every committed event of `events_tp` from offset `start`, in order, to `apply`.
    Returns how many, the highest input position their headers record (INPUT_OFFSET_HEADER;
    None: none does), and the partition's end offset when the fold ended.

    An undecodable event raises CorruptLog: skipping it would put memory one event behind the
    log. An event that names its definition by hash gets its text from `resolve` first
    (services/adapters/definitions.py); CorruptLog without one.

    The fold is CPU-bound and a partition's history can take seconds: it yields to the
    loop every FOLD_SLICE_S, so the consumer keeps heartbeating, a stop is served at once
    (cancelling this, which has written nothing) and the other shards keep deciding."""
    count = 0
    logged_position: int | None = None
    slice_end = time.monotonic() + FOLD_SLICE_S
    async with started_consumer(bootstrap, None) as consumer:
        consumer.assign([events_tp])
        end = (await consumer.end_offsets([events_tp]))[events_tp]
        if start > 0:
            consumer.seek(events_tp, start)
        else:
            await consumer.seek_to_beginning(events_tp)
        while await consumer.position(events_tp) < end:
            batch = await consumer.getmany(events_tp, timeout_ms=500, max_records=5000)
            for record in batch.get(events_tp, []):
                try:
                    event = codec.decode_event(record.value)
                except DecodeError as err:
                    # Skipping it would put memory one event behind the log, and the next
                    # decision would reuse its sequence number. Refuse to own p instead.
                    raise CorruptLog(
                        f"events[{events_tp.partition}]@{record.offset} is undecodable: {err}"
                    ) from err
                if names_its_definition(event):
                    if resolve is None:
                        raise CorruptLog(f"{event.event_id}: names a definition, no reader")
                    event = await resolve(event)
                apply(event)
                count += 1
                logged = input_offset(record.headers)
                if logged is not None:
                    logged_position = max(logged_position or 0, logged)
                if count % FOLD_CHECK_EVERY == 0 and time.monotonic() >= slice_end:
                    # A fetch whose records are buffered returns without suspending.
                    await asyncio.sleep(0)
                    slice_end = time.monotonic() + FOLD_SLICE_S
    return count, logged_position, end
