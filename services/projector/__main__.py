"""`python -m services.projector`: the projector process's composition root."""

from __future__ import annotations

import asyncio
import signal

from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.logs import setup_logging
from services.adapters.postgres import apply_migrations, connect_pool, connect_pool_when_up
from services.adapters.settings import Settings
from services.projector.consumer import Projector


async def main(settings: Settings) -> None:
    await wait_for_kafka(settings.kafka_bootstrap)
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)
    # Started beside a database that is still booting or restarting, the projector waits.
    pool = await connect_pool_when_up(
        settings.database_url, min_size=1, max_size=4, prepare=apply_migrations
    )
    projector = Projector(
        settings.kafka_bootstrap,
        pool,
        Codec(),
        reconnect=lambda: connect_pool(settings.database_url, min_size=1, max_size=4),
    )
    try:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, projector.stop)
        await projector.run()
    finally:
        if projector.pool is not None:  # the latest one: an outage replaces it
            await projector.pool.close()


def run() -> None:
    settings = Settings.from_env()
    setup_logging("projector", settings.log_level, kafka_bootstrap=settings.kafka_bootstrap)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(settings))
    else:
        uvloop.run(main(settings))


if __name__ == "__main__":
    run()
