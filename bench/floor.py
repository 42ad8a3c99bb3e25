"""The floor under Baton's latency: what one Kafka hop and one transaction cost on this machine,
with the same client (aiokafka) and settings the engine and worker use.

    .venv/bin/python -m bench.floor --bootstrap 127.0.0.1:19692 [-n 300]

- hop: an idempotent acks=all send -> a read_committed consumer sees it (the worker's report
  reaching the engine);
- transaction: begin, one send, send_offsets_to_transaction, commit (the engine's commit of one
  decision), stage by stage;
- transactional hop: from begin to a read_committed consumer seeing the record (the engine's
  decision reaching a worker);
- pipelined: the same transaction with the offsets added while the send is in flight;
- back-to-back: a transaction begun right after the previous one committed (its markers may
  not be written yet: see CONCURRENT_TRANSACTIONS_BACKOFF_S in services/adapters/kafka.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.stats import summarize
from services.adapters.kafka import new_consumer, new_producer, new_transactional_producer

TOPIC = "bench.floor"
GROUP = "bench-floor"


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000


async def _ensure_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(TOPIC, 1, 1)])
            await asyncio.sleep(1)
    finally:
        await admin.close()


async def measure(bootstrap: str, n: int) -> dict[str, Any]:
    await _ensure_topic(bootstrap)
    tp = TopicPartition(TOPIC, 0)
    consumer = new_consumer(bootstrap, None, fetch_max_wait_ms=10)
    await consumer.start()
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    plain = new_producer(bootstrap)
    txn = new_transactional_producer(bootstrap, f"bench-floor-{uuid.uuid4().hex[:8]}")
    await plain.start()
    await txn.start()
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "hop",
            "txn_send",
            "txn_offsets",
            "txn_commit",
            "txn_total",
            "txn_hop",
            "pipelined_total",
            "pipelined_hop",
            "back_to_back",
        )
    }

    async def seen() -> float:
        while True:
            got = await consumer.getmany(tp, timeout_ms=1000)
            if got.get(tp):
                return time.perf_counter()

    try:
        for _ in range(n):
            t0 = time.perf_counter()
            waiter = asyncio.create_task(seen())
            await (await plain.send(TOPIC, b"x"))
            out["hop"].append(_ms(t0, await waiter))

            t0 = time.perf_counter()
            waiter = asyncio.create_task(seen())
            async with txn.transaction():
                await (await txn.send(TOPIC, b"y"))
                t1 = time.perf_counter()
                await txn.send_offsets_to_transaction({tp: 0}, GROUP)
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            out["txn_send"].append(_ms(t0, t1))
            out["txn_offsets"].append(_ms(t1, t2))
            out["txn_commit"].append(_ms(t2, t3))
            out["txn_total"].append(_ms(t0, t3))
            out["txn_hop"].append(_ms(t0, await waiter))

            # The same transaction without waiting for the send's ack before adding the
            # offsets: aiokafka serialises coordinator requests but lets produce overlap them.
            t0 = time.perf_counter()
            waiter = asyncio.create_task(seen())
            async with txn.transaction():
                fut = await txn.send(TOPIC, b"z")
                await txn.send_offsets_to_transaction({tp: 0}, GROUP)
                await fut
            out["pipelined_total"].append(_ms(t0, time.perf_counter()))
            out["pipelined_hop"].append(_ms(t0, await waiter))

            # A transaction right after another one, as a busy engine shard commits them.
            t0 = time.perf_counter()
            waiter = asyncio.create_task(seen())
            async with txn.transaction():
                await (await txn.send(TOPIC, b"b"))
            out["back_to_back"].append(_ms(t0, time.perf_counter()))
            await waiter  # consumed here, so the next hop waits for its own record
    finally:
        await txn.stop()
        await plain.stop()
        await consumer.stop()
    return {k: summarize(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    for name, s in asyncio.run(measure(args.bootstrap, args.n)).items():
        assert s is not None
        print(
            f"{name:12} p50 {s.p50:6.2f} ms  p90 {s.p90:6.2f}  p99 {s.p99:6.2f}  max {s.max:6.2f}"
        )


if __name__ == "__main__":
    main()
