"""A local Baton stack: the infra, then the engine, worker, projector and API as child processes.

Used by `baton run` and by the e2e and chaos tests, which kill and restart children by name.
Children are `sys.executable -m services.<name>`, run from the repository root in their own
session (a Ctrl-C in the terminal reaches only the parent, which then stops them in order),
with stdout and stderr appended to `<log_dir>/<name>.log`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from services.adapters import infra
from services.adapters.avro import Codec
from services.adapters.kafka import ensure_topics, wait_for_kafka
from services.adapters.postgres import apply_migrations, connect_pool
from services.adapters.schema_registry import register_schemas
from services.adapters.settings import REPO_ROOT, Settings

PROCESSES = frozenset({"engine", "worker", "projector", "api"})
KAFKA_WAIT_S = 90.0

# `supervise`: a child that exits is started again after 1, 2, 4, 8, 16 s; one that ran for
# a minute counts as recovered. Five quick exits in a row mean it cannot run here (a port in
# use, a broken setting): the caller stops the stack rather than loop forever.
RESTART_BASE_S = 1.0
RESTART_MAX_S = 30.0
STABLE_S = 60.0
MAX_QUICK_EXITS = 5


def after_exit(quick_exits: int, ran_s: float) -> tuple[int, float | None]:
    """A child exited after running `ran_s` seconds, having exited `quick_exits` times in a
    row before without running `STABLE_S`: the new count, and the seconds to wait before
    starting it again (None: give up)."""
    quick_exits = 1 if ran_s >= STABLE_S else quick_exits + 1
    if quick_exits > MAX_QUICK_EXITS:
        return quick_exits, None
    return quick_exits, min(RESTART_MAX_S, RESTART_BASE_S * 2 ** (quick_exits - 1))


# `HangWatch`: an API that has not answered /health at all (no response, not a 503) for this
# long is stuck (its event loop blocked): killed, so that `supervise` starts it again. Well
# above its start-up time (a few seconds) and uvicorn's graceful shutdown (5 s).
HANG_S = 30.0


@dataclass
class HangWatch:
    """Whether a running process that should answer has stopped answering: `observe` each
    probe; True once no probe was answered for `hang_s` seconds of the same pid."""

    hang_s: float = HANG_S
    _pid: int | None = None
    _silent_since: float | None = None

    def observe(self, pid: int | None, answered: bool, now: float) -> bool:
        if pid != self._pid or answered:
            self._pid, self._silent_since = pid, None if answered else now
            return False
        if self._silent_since is None:
            self._silent_since = now
        return now - self._silent_since >= self.hang_s


class ChildFailing(RuntimeError):
    """A child of the stack keeps exiting; `supervise` gave up on it."""


async def prepare(settings: Settings) -> None:
    """Start the managed Kafka and PostgreSQL, wait for Kafka, apply the migrations, create
    the topics and register the schemas. Idempotent: safe on an already prepared stack."""
    await asyncio.gather(
        asyncio.to_thread(infra.start_kafka, settings),
        asyncio.to_thread(infra.start_postgres, settings),
    )
    # aiokafka logs every refused connection while the broker boots; those are expected.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        await wait_for_kafka(settings.kafka_bootstrap, KAFKA_WAIT_S)
    finally:
        kafka_log.setLevel(level)
    pool = await connect_pool(settings.database_url)
    try:
        await apply_migrations(pool)
        await ensure_topics(settings.kafka_bootstrap, settings.partitions)
        await register_schemas(pool, Codec())
    finally:
        await pool.close()


def child_env(settings: Settings) -> dict[str, str]:
    """os.environ plus every variable `Settings.from_env` reads, so children agree with us."""
    env = settings.subprocess_env()
    env["BATON_PARTITIONS"] = str(settings.partitions)
    env["BATON_API_HOST"] = settings.api_host
    env["BATON_API_PORT"] = str(settings.api_port)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def api_url(settings: Settings) -> str:
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


@dataclass
class _Child:
    module: str
    args: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0  # time.monotonic() of the last spawn
    quick_exits: int = 0  # see after_exit
    restart_at: float | None = None  # when `supervise` starts it again


class Stack:
    """The child processes of one local stack, by name (`worker`, `worker-2`, …)."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = child_env(settings)
        self._children: dict[str, _Child] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, name: str, *args: str) -> str:
        """Spawn `python -m services.<name> *args`; returns the child's name in this stack
        (`name`, or `name-2`, `name-3` … for further processes of the same kind)."""
        if name not in PROCESSES:
            raise ValueError(f"unknown process {name!r}; expected one of {sorted(PROCESSES)}")
        label, n = name, 1
        while label in self._children:
            n += 1
            label = f"{name}-{n}"
        child = _Child(f"services.{name}", args, self.log_dir / f"{label}.log")
        self._children[label] = child
        self._spawn(child)
        return label

    def _spawn(self, child: _Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if child.log is None or child.log.closed:
            child.log = child.log_path.open("ab")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        child.log.write(f"---- {stamp} start {child.module} {' '.join(child.args)}\n".encode())
        child.log.flush()
        child.process = subprocess.Popen(
            [sys.executable, "-m", child.module, *child.args],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=child.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.restart_at = None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the child and, for SIGKILL, reap it. The child stays registered."""
        process = self._child(name).process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        if sig == signal.SIGKILL:
            process.wait()

    def restart(self, name: str, timeout: float = 10) -> None:
        """Stop the child (SIGTERM, SIGKILL after `timeout`) and start it again, same args."""
        child = self._child(name)
        if child.process is not None:
            _terminate([child.process], timeout)
        self._spawn(child)

    def stop_all(self, timeout: float = 10) -> None:
        """SIGTERM every child, then SIGKILL whatever is still running after `timeout`.
        The API stops first (no new commands), then the rest together."""
        api = [c.process for k, c in self._children.items() if _kind(k) == "api" and c.process]
        rest = [c.process for k, c in self._children.items() if _kind(k) != "api" and c.process]
        _terminate(api, timeout)
        _terminate(rest, timeout)
        for child in self._children.values():
            if child.log is not None:
                child.log.close()

    def supervise(self, now: float | None = None) -> list[str]:
        """Start again the children that exited, with back-off (`after_exit`); call it
        periodically. Returns what happened, one line each, for the operator; raises
        ChildFailing when a child keeps exiting. Children stopped by `kill`, `restart` or
        `stop_all` of the tests are not supervised unless this is called."""
        now = time.monotonic() if now is None else now
        lines = []
        for label, child in self._children.items():
            process = child.process
            if process is None or (code := process.poll()) is None:
                continue
            if child.restart_at is None:
                child.quick_exits, delay = after_exit(child.quick_exits, now - child.started_at)
                if delay is None:
                    raise ChildFailing(
                        f"{label} exited {child.quick_exits} times in a row, each within "
                        f"{STABLE_S:g}s of starting (last with {code}); see {child.log_path}"
                    )
                child.restart_at = now + delay
                lines.append(
                    f"warning: {label} exited with {code}; starting it again in {delay:g}s "
                    f"(see {child.log_path})"
                )
            elif now >= child.restart_at:
                self._spawn(child)
                assert child.process is not None
                lines.append(f"{label} started again (pid {child.process.pid})")
        return lines

    # -- inspection ----------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._children)

    def pid(self, name: str) -> int | None:
        process = self._child(name).process
        return process.pid if process is not None else None

    def is_running(self, name: str) -> bool:
        process = self._child(name).process
        return process is not None and process.poll() is None

    def log_path(self, name: str) -> Path:
        return self._child(name).log_path

    def exited(self) -> dict[str, int]:
        """Children that have exited, with their return codes."""
        return {
            label: code
            for label, child in self._children.items()
            if child.process is not None and (code := child.process.poll()) is not None
        }

    def _child(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(
                f"no process {name!r} in this stack ({', '.join(self._children)})"
            ) from None

    # -- readiness -----------------------------------------------------------------------

    async def wait_api(self, timeout: float) -> None:
        """Until `GET /health` answers 200; TimeoutError (with the API's log tail) otherwise,
        or RuntimeError as soon as an API process has exited."""
        url = f"{api_url(self.settings)}/health"
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:500]}"
                except httpx.HTTPError as err:
                    last = f"{type(err).__name__}: {err}"
                dead = {k: v for k, v in self.exited().items() if _kind(k) == "api"}
                if dead:
                    raise RuntimeError(f"the API exited ({dead}):\n{self._api_log_tail()}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"the API at {url} was not healthy within {timeout:g}s ({last}):\n"
                        + self._api_log_tail()
                    )
                await asyncio.sleep(0.1)

    def _api_log_tail(self, lines: int = 30) -> str:
        path = self.log_dir / "api.log"
        if not path.exists():
            return "(no api.log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _kind(label: str) -> str:
    return label.split("-")[0]


def _terminate(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
