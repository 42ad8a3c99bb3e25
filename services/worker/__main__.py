"""The worker process: ``python -m services.worker --queue default --concurrency 8``.

Composition root: the one place the worker's dependencies are built from settings and the
environment (``BATON_WORKER_ID``, ``BATON_HEARTBEAT_SECONDS``, ``BATON_SHUTDOWN_GRACE_SECONDS``,
``BATON_STEP_ENV_ALLOW``, ``BATON_STEP_USER``, and the step types' settings: ``BATON_HTTP_ALLOWED_HOSTS``,
``BATON_SQL_CONNECTIONS``, ``BATON_SQL_ALLOW_SUPERUSER``). It checks each sql connection's
role before it serves, and exits rather than serve a superuser connection not allowed.
SIGTERM or SIGINT stops fetching; running steps get the grace period, then are killed and
left for the engine to retry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

from aiokafka import TopicPartition

from services.adapters.avro import Codec
from services.adapters.kafka import (
    DEFAULT_QUEUE,
    TOPIC_CONTROL,
    ensure_topics,
    new_consumer,
    new_producer,
    wait_for_kafka,
)
from services.adapters.logs import setup_logging
from services.adapters.settings import Settings, WorkerSettings
from services.worker.runner import Worker, WorkerOptions, group_id
from services.worker.runtimes.contract import StepRuntime
from services.worker.runtimes.registry import default_runtimes
from services.worker.runtimes.sql import SqlRuntime
from services.worker.runtimes.sql_roles import check_connections
from services.worker.step_env import EnvAllowList, StepUser, hide_worker_process

log = logging.getLogger("services.worker")


def step_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What a step's process starts with of the worker's environment: the variables
    ``BATON_STEP_ENV_ALLOW`` names (step_env.py), never the worker's secrets. ValueError
    for a bad entry."""
    return EnvAllowList.parse(env.get("BATON_STEP_ENV_ALLOW")).select(env)


async def _runtimes(
    worker_settings: WorkerSettings, env: Mapping[str, str]
) -> dict[str, StepRuntime]:
    """The step runtimes from the environment; exits with the reason on a bad setting, or
    when a sql connection's role is a superuser the operator did not allow (sql_roles.py)."""
    try:
        step_user = StepUser.parse(worker_settings.step_user)
        runtimes = default_runtimes(
            base_env=step_environment(env),
            http_allowed_hosts=worker_settings.http_allowed_hosts,
            sql_connections=worker_settings.sql_connections,
            python_path=env.get("PYTHONPATH"),
            sql_allow_superuser=worker_settings.sql_allow_superuser,
            step_user=step_user,
        )
    except ValueError as err:
        raise SystemExit(f"worker: {err}") from None
    # Steps of the worker's own user cannot read its environment through /proc (unless root).
    hidden = hide_worker_process()
    if step_user is None and os.geteuid() == 0:
        log.warning(
            "steps run as root: they can read this worker's secrets and the whole machine;"
            " set BATON_STEP_USER to run them as an unprivileged user"
        )
    elif step_user is None and not hidden:
        log.warning("steps run as the worker's user and can read its environment (/proc)")
    if step_user is not None:
        python_env = {"PYTHONPATH": env["PYTHONPATH"]} if env.get("PYTHONPATH") else {}
        fault = step_user.python_fault(sys.executable, os.getcwd(), python_env)
        if fault is not None:
            log.warning(
                "python steps will fail: BATON_STEP_USER %r cannot run this worker's Python"
                " (%s) here: %s",
                step_user.name,
                sys.executable,
                fault,
            )
    sql = runtimes["sql"]
    assert isinstance(sql, SqlRuntime)
    refused = await check_connections(sql.connections, sql.allow_superuser, log)
    if refused:
        raise SystemExit("worker: refusing to start: " + "; ".join(refused))
    return runtimes


def _options(argv: list[str] | None, worker_settings: WorkerSettings) -> WorkerOptions:
    parser = argparse.ArgumentParser(prog="python -m services.worker", description=__doc__)
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="the task queue to serve")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks run at once (default 8)")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    return WorkerOptions(
        queue=args.queue,
        worker_id=worker_settings.worker_id or f"{socket.gethostname()}-{os.getpid()}",
        concurrency=args.concurrency,
        heartbeat_seconds=worker_settings.heartbeat_seconds,
        shutdown_grace_seconds=worker_settings.shutdown_grace_seconds,
    )


async def serve(
    settings: Settings, worker_settings: WorkerSettings, options: WorkerOptions
) -> None:
    # Built and checked first: a bad setting stops the worker before it joins its group.
    runtimes = await _runtimes(worker_settings, os.environ)
    await wait_for_kafka(settings.kafka_bootstrap)  # started beside a broker still booting
    await ensure_topics(settings.kafka_bootstrap, settings.partitions, [options.queue])
    producer = new_producer(settings.kafka_bootstrap)
    consumer = new_consumer(settings.kafka_bootstrap, group_id(options.queue))
    # No group: every worker reads every cancellation, from now on.
    control = new_consumer(settings.kafka_bootstrap, None, auto_offset_reset="latest")
    worker = Worker(consumer, producer, Codec(), runtimes, options, control)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await producer.start()
    await control.start()
    control.assign([TopicPartition(TOPIC_CONTROL, 0)])
    await control.seek_to_end()
    try:
        await consumer.start()
        try:
            log.info(
                "worker %s serving queue %r, concurrency %d",
                options.worker_id,
                options.queue,
                options.concurrency,
            )
            await worker.run()
        finally:
            await consumer.stop()
    finally:
        await control.stop()
        await producer.stop()
    log.info("worker %s stopped", options.worker_id)


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    setup_logging("worker", settings.log_level, kafka_bootstrap=settings.kafka_bootstrap)
    try:
        worker_settings = WorkerSettings.from_env()
    except ValueError as err:  # a bad BATON_HEARTBEAT_SECONDS ...: the reason, no traceback
        raise SystemExit(str(err)) from None
    options = _options(argv, worker_settings)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, worker_settings, options))
    else:
        uvloop.run(serve(settings, worker_settings, options))


if __name__ == "__main__":
    main()
