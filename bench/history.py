"""Phase `history`: the engine against the length of its log. For each size, a fresh stack
is seeded, before the engine first starts, with N finished instances, written straight to the
topics through the real codecs, as an engine that had run them would have left them:

- their events (each instance's whole life as the decider decides it: started, one step
  created, started and succeeded on a worker, succeeded) on baton.events;
- their final states on baton.archive, and the archive index and a checkpoint after those
  events on baton.snapshots (what the engine writes when it evicts a finished instance).

Then live instances are started through the API and parked on a timer, the engine is
killed with SIGKILL and restarted while chains flow (phases._recovery), and the engine's RSS
is read once everything has settled. Recovery and RSS should not depend on N."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.phases import PhaseContext, _recovery, _rss, _start_many, session
from bench.workloads import chain20, hold, now_us
from services.adapters.avro import Codec
from services.adapters.avro.snapshots import (
    Checkpoint,
    DefinitionRecord,
    SegmentRecord,
    SnapshotCodec,
)
from services.adapters.kafka import (
    TOPIC_ARCHIVE,
    TOPIC_EVENTS,
    TOPIC_SNAPSHOTS,
    ensure_topics,
    new_producer,
    partition_for,
)
from services.domain.decider import decide, finished
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    StartInstance,
)
from services.domain.protocol.events import Event, StepAttemptStarted
from services.engine.archive import chunks, segment
from services.engine.snapshots import (
    CHECKPOINT_KEY,
    definition_key,
    encode_state_record,
    segment_key,
    state_key,
)

log = logging.getLogger(__name__)

FLUSH_EVERY = 20_000  # records in flight before the seeder waits for their delivery
SETTLE_S = 12.0
PROJECTED_PER_S = 3_000  # a pessimistic projector rate, for the wait before the API is healthy  # two snapshot intervals: the live instances' states are in a snapshot


def _lifecycle() -> tuple[list[Event], Any]:
    """One finished instance's events and final state, as the decider makes them."""
    wf = parse_workflow({"id": "bench-finished", "steps": [{"id": "a", "type": "noop"}]})
    now = now_us()
    state: Any = None
    events: list[Event] = []
    for cmd in (
        StartInstance("template", "bench-finished", 1, wf.to_json(), "{}", "bench"),
        ReportAttemptStarted("template", "a", 1, "bench-worker"),
        ReportAttemptSucceeded("template", "a", 1, "{}"),
    ):
        d = decide(state, cmd, now)
        events += d.events
        state = d.state
    assert finished(state)
    return events, state


async def seed_finished(bootstrap: str, partitions: int, count: int) -> dict[str, Any]:
    """`count` finished instances over every partition (see the module's docs)."""
    t0 = time.monotonic()
    await ensure_topics(bootstrap, partitions)
    template, final = _lifecycle()
    codec, snapshots = Codec(), SnapshotCodec()
    producer = new_producer(bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    written = {"events": 0, "archived": 0}
    try:
        per_partition: dict[int, list[str]] = {p: [] for p in range(partitions)}
        while sum(map(len, per_partition.values())) < count:
            iid = uuid.uuid4().hex
            per_partition[partition_for(iid, partitions)].append(iid)
        for p, ids in per_partition.items():
            await _seed_partition(producer, codec, snapshots, p, ids, template, final, written)
    finally:
        await producer.stop()
    return {**written, "seed_seconds": round(time.monotonic() - t0, 1)}


async def _seed_partition(
    producer: AIOKafkaProducer,
    codec: Codec,
    snapshots: SnapshotCodec,
    p: int,
    ids: list[str],
    template: list[Event],
    final: Any,
    written: dict[str, int],
) -> None:
    pending: list[asyncio.Future[Any]] = []
    archive: list[tuple[bytes, asyncio.Future[Any]]] = []
    definitions: dict[str, str] = {}
    new_definitions: dict[str, str] = {}
    events_end = 0
    for iid in ids:
        for e in template:
            e = dataclasses.replace(e, event_id=f"{iid}:{e.seq}", instance_id=iid)
            data = codec.encode_event(e)
            pending.append(await producer.send(TOPIC_EVENTS, data, key=iid.encode(), partition=p))
            events_end += 1
        state = dataclasses.replace(final, instance_id=iid)
        data = encode_state_record(snapshots, "instance", state, definitions, new_definitions)
        definitions.update(new_definitions)
        skey = state_key("instance", iid)
        archive.append((skey, await producer.send(TOPIC_ARCHIVE, data, key=skey, partition=p)))
        if len(pending) >= FLUSH_EVERY:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    entries = [(skey, (await f).offset) for skey, f in archive]
    for digest, text in definitions.items():
        data = snapshots.encode_definition(DefinitionRecord(digest, text))
        await producer.send_and_wait(TOPIC_SNAPSHOTS, data, key=definition_key(digest), partition=p)
    for n, part in enumerate(chunks(entries)):
        data = snapshots.encode_segment(SegmentRecord(segment(part)))
        await producer.send_and_wait(TOPIC_SNAPSHOTS, data, key=segment_key(n), partition=p)
    checkpoint = Checkpoint(events_end, 0, time.time_ns() // 1000)
    data = snapshots.encode_checkpoint(checkpoint)
    await producer.send_and_wait(TOPIC_SNAPSHOTS, data, key=CHECKPOINT_KEY, partition=p)
    written["events"] += events_end
    written["archived"] += len(entries)


async def history(ctx: PhaseContext) -> dict[str, Any]:
    points = []
    for count in ctx.sizes.history_points:
        points.append(await _one(ctx, count))
        log.info("history %d: %s", count, points[-1])
    return {"points": points}


async def _one(ctx: PhaseContext, count: int) -> dict[str, Any]:
    s, settings = ctx.sizes, ctx.settings
    seeded: dict[str, Any] = {}

    async def seed() -> None:
        seeded.update(await seed_finished(settings.kafka_bootstrap, settings.partitions, count))

    # The API reports healthy once the projector has caught up with the seeded events (about
    # 5 per instance): allow for it.
    ready = 90 + count * 5 / PROJECTED_PER_S
    async with session(ctx, f"history-{count}", seed=seed, ready_timeout_s=ready) as run:
        stack, tap, client = run.stack, run.tap, run.client
        await client.push(hold())
        await client.push(chain20())
        parked: set[str] = set()

        def park(e: Event) -> None:
            if isinstance(e.payload, StepAttemptStarted) and e.instance_id is not None:
                parked.add(e.instance_id)

        tap.on_event = park
        live = set(await _start_many(client, "bench-hold", s.history_live))
        await tap.wait_until(
            lambda: parked >= live, 600, f"{len(live)} live instances parked", interval=0.5
        )
        tap.on_event = None
        await asyncio.sleep(SETTLE_S)
        engine_pid = stack.pid("engine")
        assert engine_pid is not None
        rss = _rss(engine_pid)
        recovery = await _recovery(stack, client, tap, s.recovery_flow, len(live))
        await asyncio.sleep(SETTLE_S)
        restarted_pid = stack.pid("engine")
        assert restarted_pid is not None
        rss_restarted = _rss(restarted_pid)
    return {
        "finished": count,
        **seeded,
        "live": len(live),
        "engine_rss_bytes": rss,
        "engine_rss_after_restart_bytes": rss_restarted,
        "recovery": recovery,
    }
