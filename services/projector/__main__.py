"""`python -m services.projector`: the projector process's composition root."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import asyncpg

from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.logs import setup_logging
from services.adapters.postgres import apply_migrations, connect_pool, is_unavailable, retry_delay
from services.adapters.settings import Settings
from services.projector.consumer import Projector

log = logging.getLogger("services.projector")


async def main() -> None:
    settings = Settings.from_env()
    await wait_for_kafka(settings.kafka_bootstrap)
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)
    pool = await _connect(settings.database_url)
    try:
        projector = Projector(settings.kafka_bootstrap, pool, Codec())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, projector.stop)
        await projector.run()
    finally:
        await pool.close()


async def _connect(url: str) -> asyncpg.Pool:
    """A pool with the migrations applied, waiting (with back-off) for PostgreSQL to answer:
    started beside a database that is still booting or restarting, the projector waits."""
    attempt = 0
    while True:
        try:
            pool = await connect_pool(url, min_size=1, max_size=4)
        except Exception as err:
            if not is_unavailable(err):
                raise
            if attempt == 0:
                log.warning("PostgreSQL is unavailable (%s); waiting for it", err)
        else:
            try:
                await apply_migrations(pool)
            except BaseException:
                await pool.close()
                raise
            return pool
        await asyncio.sleep(retry_delay(attempt))
        attempt += 1


def run() -> None:
    setup_logging(
        "projector",
        os.environ.get("BATON_LOG_LEVEL", "INFO"),
        kafka_bootstrap=Settings.from_env().kafka_bootstrap,
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


if __name__ == "__main__":
    run()
