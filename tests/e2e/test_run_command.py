"""The README's first command, `baton run` (what `make run` runs), end to end: it prepares
Kafka and PostgreSQL, starts every process, runs the sample workflow to SUCCEEDED, keeps
serving, starts a child that was killed again, and stops every process on Ctrl-C. It runs
on its own ports and data directory."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from services.adapters import infra
from services.adapters.settings import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

RUN_ENV = {
    "KAFKA_PORT": "19292",
    "KAFKA_CONTROLLER_PORT": "19293",
    "BATON_PG_PORT": "15632",
    "BATON_API_PORT": "18280",
}


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line)


def _read_until(
    lines: queue.Queue[str], needle: str, seen: list[str], timeout: float, start: int = 0
) -> None:
    """Until a line from `seen[start]` on holds `needle`."""
    deadline = time.monotonic() + timeout
    while not any(needle in line for line in seen[start:]):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"`baton run` never printed {needle!r}:\n{''.join(seen[-40:])}")
        try:
            seen.append(lines.get(timeout=min(left, 1.0)))
        except queue.Empty:
            continue


def _healthy() -> bool:
    try:
        url = f"http://127.0.0.1:{RUN_ENV['BATON_API_PORT']}/health"
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_baton_run_serves_the_sample_and_stops_on_ctrl_c(settings: Settings) -> None:
    env = {**os.environ, **RUN_ENV, "BATON_HOME": str(settings.home / "baton-run")}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        env.pop(name, None)
    run_settings = Settings.from_env(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        _read_until(lines, "hello_diamond ended SUCCEEDED", seen, timeout=240)
        _read_until(lines, "Ctrl-C stops", seen, timeout=30)
        health = httpx.get(f"http://127.0.0.1:{RUN_ENV['BATON_API_PORT']}/health", timeout=5)
        assert health.status_code == 200
        # A child that dies is started again: kill -9 the API, it comes back.
        (api,) = [
            child
            for child in psutil.Process(process.pid).children()
            if "services.api" in child.cmdline()
        ]
        api.kill()
        _read_until(lines, "api exited with -9", seen, timeout=30)
        _read_until(lines, "api started again", seen, timeout=30)
        wait_until(_healthy, timeout=60, message="the restarted API answers /health")
        (again,) = [
            child
            for child in psutil.Process(process.pid).children()
            if "services.api" in child.cmdline()
        ]
        assert again.pid != api.pid
        # An API that stops answering (SIGSTOP: as stuck as a blocked event loop) is killed
        # and started again.
        mark = len(seen)
        again.suspend()
        _read_until(lines, "has not answered /health", seen, timeout=90, start=mark)
        _read_until(lines, "api started again", seen, timeout=30, start=mark)
        wait_until(_healthy, timeout=60, message="the API started after the hang answers")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        _read_until(lines, "stopping", seen, timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{RUN_ENV['BATON_API_PORT']}/health", timeout=5)
    finally:
        if process.poll() is None:
            # Its children run in their own sessions: killed with it, not left behind.
            for child in psutil.Process(process.pid).children():
                child.kill()
            process.kill()
            process.wait()
        reader.join(timeout=10)  # the pipe reaches EOF once the process has exited
        assert process.stdout is not None
        process.stdout.close()
        infra.stop_kafka(run_settings)
        infra.stop_postgres(run_settings)
