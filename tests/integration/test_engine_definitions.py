"""Definitions by reference, on real Kafka: the engine writes a definition once to
baton.definitions and each InstanceStarted names it by hash; a fold from the log's start puts
every text back (also past a hostile record under the same key), so the state it folds is
exactly the running engine's."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from services.adapters.avro import Codec
from services.adapters.definitions import DEFINITIONS_TP, definition_hash
from services.adapters.kafka import TOPIC_EVENTS, started_consumer
from services.adapters.publish import send_command
from services.domain.protocol.commands import StartInstance
from services.domain.protocol.events import InstanceStarted
from tests.helpers import wait_until_async
from tests.integration.engine_harness import (
    definition,
    following_events,
    full_fold,
    instance_ids_on,
    running_engine,
    scripted_worker,
)

pytestmark = pytest.mark.integration

HOT = 3
# A definition of some size, as real ones are (20 steps, each with a description).
FAT = definition(
    "by-reference",
    [
        {
            "id": f"s{i:02}",
            "type": "noop",
            "description": f"step {i} of a definition that is long enough to notice " * 4,
            **({"next": [f"s{i + 1:02}"]} if i < 19 else {}),
        }
        for i in range(20)
    ],
)


async def definitions_records(kafka: str) -> list[tuple[bytes, bytes]]:
    async with started_consumer(kafka, None) as consumer:
        consumer.assign([DEFINITIONS_TP])
        end = (await consumer.end_offsets([DEFINITIONS_TP]))[DEFINITIONS_TP]
        await consumer.seek_to_beginning(DEFINITIONS_TP)
        found: list[tuple[bytes, bytes]] = []
        while await consumer.position(DEFINITIONS_TP) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.key, r.value) for r in records if r.key and r.value]
        return found


async def test_a_definition_is_logged_once_and_each_start_names_it(
    kafka: str, producer: AIOKafkaProducer
) -> None:
    digest = definition_hash(FAT)
    # A hostile record under the definition's key, before the real one: never taken for it.
    await producer.send_and_wait(
        DEFINITIONS_TP.topic, b'{"id":"evil","steps":[]}', key=digest.encode(), partition=0
    )
    ids = instance_ids_on(HOT, 6)
    raw: list[bytes] = []
    async with (
        following_events(kafka) as log,
        scripted_worker(kafka, "default", lambda _: None),
        running_engine(kafka, "itest-definitions-1") as engine,
    ):
        for iid in ids:
            start = StartInstance(iid, "by-reference", 1, FAT, "{}", "itest", None)
            await send_command(producer, Codec(), start)
        await wait_until_async(
            lambda: all("InstanceSucceeded" in log.types(i) for i in ids), timeout=60
        )
        running = {i: engine.shards[HOT].instances.get(i) for i in ids}
    # On the log: every start names the definition, none carries it.
    async with started_consumer(kafka, None, TOPIC_EVENTS) as consumer:
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                raw += [r.value for r in records if r.key and r.key.decode() in ids]
    starts = [
        e.payload for e in map(Codec().decode_event, raw) if isinstance(e.payload, InstanceStarted)
    ]
    assert len(starts) == len(ids)
    assert all(p.definition == "" and p.definition_hash == digest for p in starts)
    assert max(len(data) for data in raw) < len(FAT) // 4
    # In baton.definitions: the text, once per shard that wrote it (here one), beside the
    # hostile record.
    written = [value for key, value in await definitions_records(kafka) if key == digest.encode()]
    assert written.count(FAT.encode()) == 1
    # A fold from the log's start puts the text back: the states are the running engine's.
    folded = await full_fold(kafka, HOT)
    for iid in ids:
        state = folded.instances.get(iid)
        if running[iid] is not None:  # still in memory then (not yet archived)
            assert state == running[iid]
        assert state is not None and state.definition == FAT
