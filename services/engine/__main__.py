"""`python -m services.engine`: the engine process's composition root."""

from __future__ import annotations

import argparse
import asyncio
import signal

from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.logs import setup_logging
from services.adapters.settings import EngineSettings, Settings
from services.engine.engine import Engine
from services.engine.fencing import quiet_fenced_leftovers


async def main(
    args: argparse.Namespace, settings: Settings, engine_settings: EngineSettings
) -> None:
    await wait_for_kafka(settings.kafka_bootstrap)
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)
    engine = Engine(
        settings.kafka_bootstrap,
        settings.partitions,
        Codec(),
        engine_id=args.id,
        heartbeat_timeout_s=engine_settings.heartbeat_timeout_s,
        transaction_linger_s=engine_settings.transaction_linger_ms / 1000,
        snapshot_interval_s=engine_settings.snapshot_interval_ms / 1000,
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
    settings = Settings.from_env()
    engine_settings = EngineSettings.from_env()
    parser = argparse.ArgumentParser(prog="python -m services.engine")
    parser.add_argument(
        "--id",
        default=engine_settings.engine_id,
        help="this engine's static group member id; a restart with the same id takes its "
        "partitions back at once (default: $BATON_ENGINE_ID or engine-1)",
    )
    args = parser.parse_args()
    setup_logging("engine", settings.log_level, kafka_bootstrap=settings.kafka_bootstrap)
    try:
        import uvloop

        uvloop.run(main(args, settings, engine_settings))
    except ImportError:
        asyncio.run(main(args, settings, engine_settings))


if __name__ == "__main__":
    run()
