"""Composition root of the API process: `python -m services.api`.

Builds the pool, the producer, the codec and the cluster probe from `Settings`, serves the
app with uvicorn on uvloop at `settings.api_host:api_port`, and closes everything on SIGTERM
/ Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os

import uvicorn

from services.adapters.avro import Codec
from services.adapters.cluster import ClusterProbe
from services.adapters.kafka import new_producer, wait_for_kafka
from services.adapters.logs import setup_logging
from services.adapters.postgres import connect_pool_when_up
from services.adapters.settings import Settings
from services.api.app import create_app
from services.api.deps import ApiDeps

log = logging.getLogger("services.api")


async def serve(settings: Settings) -> None:
    # Started beside a broker or a database still booting or restarting, the API waits.
    await wait_for_kafka(settings.kafka_bootstrap)
    pool = await connect_pool_when_up(settings.database_url, min_size=2, max_size=20)
    producer = new_producer(settings.kafka_bootstrap)
    cluster = ClusterProbe(settings.kafka_bootstrap)
    try:
        await producer.start()
        await cluster.start()
        app = create_app(ApiDeps(pool=pool, producer=producer, codec=Codec(), cluster=cluster))
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            loop="none",  # the loop is already running: uvloop, installed by main()
            log_level="info",
            access_log=False,
            proxy_headers=False,
        )
        log.info("API on http://%s:%d", settings.api_host, settings.api_port)
        await uvicorn.Server(config).serve()
    finally:
        await cluster.close()
        await producer.stop()
        await pool.close()


def main() -> None:
    settings = Settings.from_env()
    setup_logging(
        "api", os.environ.get("BATON_LOG_LEVEL", "INFO"), kafka_bootstrap=settings.kafka_bootstrap
    )
    try:
        import uvloop
    except ImportError:  # not on Linux: the stock event loop
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
