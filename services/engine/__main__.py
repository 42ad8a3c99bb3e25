"""`python -m services.engine`: the engine process's composition root."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.logs import setup_logging
from services.adapters.settings import Settings
from services.engine.engine import Engine
from services.engine.fencing import quiet_fenced_leftovers


async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await wait_for_kafka(settings.kafka_bootstrap)
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)
    engine = Engine(
        settings.kafka_bootstrap,
        settings.partitions,
        Codec(),
        engine_id=args.id,
        heartbeat_timeout_s=float(os.environ.get("BATON_HEARTBEAT_TIMEOUT", "30")),
    )
    loop = asyncio.get_running_loop()
    quiet_fenced_leftovers(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.stop)
    await engine.start()
    try:
        await engine.run()
    finally:
        await engine.close()


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.engine")
    parser.add_argument(
        "--id",
        default=os.environ.get("BATON_ENGINE_ID", "engine-1"),
        help="this engine's static group member id; a restart with the same id takes its "
        "partitions back at once (default: $BATON_ENGINE_ID or engine-1)",
    )
    args = parser.parse_args()
    setup_logging(
        "engine",
        os.environ.get("BATON_LOG_LEVEL", "INFO"),
        kafka_bootstrap=Settings.from_env().kafka_bootstrap,
    )
    try:
        import uvloop

        uvloop.run(main(args))
    except ImportError:
        asyncio.run(main(args))


if __name__ == "__main__":
    run()
