"""`python -m services.engine`: the engine process's composition root."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.settings import Settings
from services.engine.engine import Engine


def parse_partitions(spec: str, count: int) -> list[int]:
    """`all`, or a list such as `0-3,6`."""
    if spec.strip() == "all":
        return list(range(count))
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    bad = [p for p in out if not 0 <= p < count]
    if bad:
        raise SystemExit(f"BATON_ENGINE_PARTITIONS: partitions {bad} outside 0..{count - 1}")
    return sorted(out)


async def main() -> None:
    settings = Settings.from_env()
    await wait_for_kafka(settings.kafka_bootstrap)
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)
    engine = Engine(
        settings.kafka_bootstrap,
        parse_partitions(os.environ.get("BATON_ENGINE_PARTITIONS", "all"), settings.partitions),
        settings.partitions,
        Codec(),
        heartbeat_timeout_s=float(os.environ.get("BATON_HEARTBEAT_TIMEOUT", "30")),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.stop)
    await engine.start()
    try:
        await engine.run()
    finally:
        await engine.close()


def run() -> None:
    logging.basicConfig(
        level=os.environ.get("BATON_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s engine %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


if __name__ == "__main__":
    run()
