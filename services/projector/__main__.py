"""`python -m services.projector`: the projector process's composition root."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.postgres import apply_migrations, connect_pool
from services.adapters.settings import Settings
from services.projector.consumer import Projector


async def main() -> None:
    settings = Settings.from_env()
    await wait_for_kafka(settings.kafka_bootstrap)
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)
    pool = await connect_pool(settings.database_url, min_size=1, max_size=4)
    try:
        await apply_migrations(pool)
        projector = Projector(settings.kafka_bootstrap, pool, Codec())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, projector.stop)
        await projector.run()
    finally:
        await pool.close()


def run() -> None:
    logging.basicConfig(
        level=os.environ.get("BATON_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s projector %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


if __name__ == "__main__":
    run()
