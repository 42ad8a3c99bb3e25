"""One fetched batch of the events topic into the read models: decode, apply, find poison.

Poison is an event that decodes but that PostgreSQL refuses to hold (`is_poison`); finding
which events of a failed batch are poison is deterministic, as the rebuild needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from projections import apply_batch
from services.adapters.avro import Codec, DecodeError
from services.adapters.definitions import DefinitionReader
from services.adapters.postgres import is_poison
from services.domain.kernel.errors import CorruptLog
from services.domain.protocol.events import Event
from services.projector.dead_letters import DeadLetter
from services.projector.offsets import save_offsets

Fetched = Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
Decoded = tuple[ConsumerRecord[bytes, bytes], Event]
Poison = tuple[ConsumerRecord[bytes, bytes], Event, str]


def decode_batch(
    codec: Codec, fetched: Fetched, positions: Mapping[TopicPartition, int]
) -> tuple[list[Decoded], list[DeadLetter], dict[int, int]]:
    """The events of `fetched`, the records that do not decode (with the reason), and the next
    offset of each partition: past its last record, or its fetch position if further."""
    decoded: list[Decoded] = []
    dead: list[DeadLetter] = []
    next_offsets: dict[int, int] = {tp.partition: pos for tp, pos in positions.items()}
    for tp, records in fetched.items():
        if not records:
            continue
        for record in records:
            try:
                if record.value is None:
                    raise DecodeError("record has no value")
                decoded.append((record, codec.decode_event(record.value)))
            except DecodeError as err:
                dead.append((record, str(err) or type(err).__name__))
        next_offsets[tp.partition] = max(records[-1].offset + 1, positions.get(tp, 0))
    return decoded, dead, next_offsets


async def with_definitions(
    reader: DefinitionReader, decoded: list[Decoded]
) -> tuple[list[Decoded], list[DeadLetter]]:
    """The events with the definitions they name by hash put back (the read models show an
    instance's steps from it), and those whose definition baton.definitions lacks, as dead
    letters: the log refers to a text it does not hold."""
    resolved: list[Decoded] = []
    dead: list[DeadLetter] = []
    for record, event in decoded:
        try:
            resolved.append((record, await reader.resolve(event)))
        except CorruptLog as err:
            dead.append((record, str(err)))
    return resolved, dead


async def commit_batch(
    pool: asyncpg.Pool,
    projector: str,
    topic: str,
    events: Sequence[Event],
    next_offsets: Mapping[int, int],
) -> int:
    """Apply `events` and store the positions, in one transaction; returns how many were new."""
    async with pool.acquire() as conn, conn.transaction():
        applied = await apply_batch(conn, events)
        await save_offsets(conn, projector, topic, next_offsets)
    return applied


async def find_poison(pool: asyncpg.Pool, decoded: Sequence[Decoded]) -> list[Poison]:
    """The events of a batch PostgreSQL refuses, each applied alone after the ones before
    it (as in the batch: one transaction, a savepoint each), then all rolled back.

    Deterministic, as the rebuild needs: whether an event is refused depends on the event
    and the rows the events before it made, not on where a batch begins; every event's
    whole payload is in `events` (the history), so a value it cannot hold is refused there
    whatever the batch. Costs one round trip per event, and only for a batch that failed."""
    found: list[Poison] = []
    async with pool.acquire() as conn:
        outer = conn.transaction()
        await outer.start()
        try:
            for record, event in decoded:
                try:
                    async with conn.transaction():  # a savepoint
                        await apply_batch(conn, [event])
                except Exception as err:
                    if not is_poison(err):
                        raise
                    reason = f"event {event.event_id} ({event.type}) cannot be projected: "
                    found.append((record, event, f"{reason}{type(err).__name__}: {err}"))
        finally:
            await outer.rollback()
    return found


def ranges(fetched: Fetched) -> str:
    """`partition@first..last` of each partition with records, for the logs."""
    return ", ".join(
        f"{tp.partition}@{rs[0].offset}..{rs[-1].offset}" for tp, rs in fetched.items() if rs
    )
