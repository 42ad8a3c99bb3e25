"""Composition root of the API process: `python -m services.api`.

Builds the pool, the producer, the codec and the cluster probe from `Settings`, serves the
app with uvicorn on uvloop at `settings.api_host:api_port`, and closes everything on SIGTERM
/ Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn

from services.adapters.avro import Codec
from services.adapters.cluster import ClusterProbe
from services.adapters.kafka import new_producer, wait_for_kafka
from services.adapters.logs import setup_logging
from services.adapters.postgres import connect_pool_when_up
from services.adapters.settings import Settings
from services.api.app import ApiOptions, create_app
from services.api.deps import ApiDeps

log = logging.getLogger("services.api")

GRACEFUL_SHUTDOWN_S = 5


async def serve(settings: Settings) -> None:
    # Started beside a broker or a database still booting or restarting, the API waits.
    await wait_for_kafka(settings.kafka_bootstrap)
    pool = await connect_pool_when_up(settings.database_url, min_size=2, max_size=20)
    producer = new_producer(settings.kafka_bootstrap)
    cluster = ClusterProbe(settings.kafka_bootstrap)
    deps = ApiDeps(pool=pool, producer=producer, codec=Codec(), cluster=cluster)
    try:
        await producer.start()
        await cluster.start()
        app = create_app(deps, ApiOptions.from_settings(settings))
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            loop="none",  # the loop is already running: uvloop, installed by main()
            log_level="info",
            access_log=False,
            proxy_headers=False,
            # SIGTERM lets requests in flight finish for this long, then closes them: a
            # validation runs out in its thread (bounded), the process stops promptly.
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        log.info("API on http://%s:%d", settings.api_host, settings.api_port)
        await uvicorn.Server(config).serve()
    finally:
        deps.validator.close()
        await cluster.close()
        await producer.stop()
        await pool.close()


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    # uvicorn handles SIGTERM while it serves, then raises it again with the handler it found:
    # with the default one the process died there, before `serve` closed the producer and the
    # pool. This one unwinds `serve` instead (and stops a start-up that is still connecting).
    signal.signal(signal.SIGTERM, _exit)
    settings = Settings.from_env()
    setup_logging("api", settings.log_level, kafka_bootstrap=settings.kafka_bootstrap)
    try:
        import uvloop
    except ImportError:  # not on Linux: the stock event loop
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
