"""Start, wait for and stop the embedded Kafka and PostgreSQL from ``infra/``.

Plain blocking functions around the shell scripts, for ``baton run`` and the test session.
Each is a no-op for a service the settings do not manage (``KAFKA_BOOTSTRAP_SERVERS`` /
``DATABASE_URL`` set), except ``wait_kafka``, which waits for whichever cluster is configured.

``python -m services.adapters.infra wait-kafka`` is the readiness probe behind
``infra/kafka/wait.sh``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from services.adapters.errors import AdapterError
from services.adapters.settings import REPO_ROOT, Settings

INFRA = REPO_ROOT / "infra"
DEFAULT_KAFKA_WAIT_S = 90.0


class InfraError(AdapterError, RuntimeError):
    """An infra script failed; its output went to this process's stdout/stderr."""


def _script(script: Path, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
    env = settings.subprocess_env()
    env["PYTHON"] = sys.executable
    env.update(extra_env or {})
    try:
        subprocess.run(["bash", str(script)], env=env, cwd=REPO_ROOT, check=True)
    except subprocess.CalledProcessError as exc:
        rel = script.relative_to(REPO_ROOT)
        raise InfraError(f"{rel} failed with exit code {exc.returncode}") from exc


def start_kafka(settings: Settings) -> None:
    if settings.kafka_managed:
        _script(INFRA / "kafka" / "start.sh", settings)


def wait_kafka(settings: Settings, timeout: float = DEFAULT_KAFKA_WAIT_S) -> None:
    _script(
        INFRA / "kafka" / "wait.sh", settings, {"KAFKA_WAIT_TIMEOUT": str(max(1, int(timeout)))}
    )


def stop_kafka(settings: Settings) -> None:
    if settings.kafka_managed:
        _script(INFRA / "kafka" / "stop.sh", settings)


def start_postgres(settings: Settings) -> None:
    if settings.postgres_managed:
        _script(INFRA / "postgres" / "start.sh", settings)


def stop_postgres(settings: Settings) -> None:
    if settings.postgres_managed:
        _script(INFRA / "postgres" / "stop.sh", settings)


# -- readiness probe ---------------------------------------------------------------------


async def _kafka_answers(bootstrap: str, request_timeout_s: float) -> bool:
    """True when a broker answers a metadata request and lists at least one broker."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout_s * 1000)
    )
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except (KafkaError, OSError):
        return False
    finally:
        await client.close()


def probe_kafka(bootstrap: str, timeout: float) -> bool:
    """Poll until the cluster answers or ``timeout`` seconds pass."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connections are expected
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if asyncio.run(_kafka_answers(bootstrap, min(5.0, max(remaining, 0.5)))):
            return True
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.adapters.infra")
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait-kafka", help="wait until the Kafka cluster answers")
    wait.add_argument("--bootstrap", default=None)
    wait.add_argument("--timeout", type=float, default=DEFAULT_KAFKA_WAIT_S)
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap or Settings.from_env().kafka_bootstrap
    return 0 if probe_kafka(bootstrap, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
