"""Shared by every peer's `run.py`: the in-step trace and the result file. Standard library only,
because each peer runs in its own virtualenv without Baton installed.

Every workload step (a no-op) marks its own entry and exit with the wall clock of the process it
runs in, appended as one line to a trace file (O_APPEND, so concurrent worker processes interleave
whole lines). The metrics are computed from those marks exactly as Baton's are computed from
its worker-reported times, so the peer table compares like with like:

- step launch: chain step i exit -> step i+1 entry (same instance);
- start: the client's clock just before the start call -> first step entry;
- chain20 / fanout100 end to end: the client's clock before the start call -> last step exit
  (the join step for the fan-out);
- throughput: step exits per second inside the measured window.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CHAIN_STEPS = 20
FANOUT_WIDTH = 100


def now_us() -> int:
    return time.time_ns() // 1000


class Trace:
    """Appends `instance step enter_us exit_us` lines; safe across processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def mark(self, instance: str, step: str, enter_us: int, exit_us: int) -> None:
        line = f"{instance} {step} {enter_us} {exit_us}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def load(self) -> dict[str, dict[str, tuple[int, int]]]:
        """instance -> step -> (enter_us, exit_us). The first mark of a step wins (a retried
        step must not hide its first run)."""
        out: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
        if not os.path.exists(self.path):
            return out
        for line in Path(self.path).read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:
                continue
            instance, step, enter, exit_ = parts
            out[instance].setdefault(step, (int(enter), int(exit_)))
        return out


def noop_step(trace: Trace, instance: str, step: str) -> None:
    """The workload's step body: nothing, bracketed by the two marks."""
    enter = now_us()
    trace.mark(instance, step, enter, now_us())


def chain_metrics(
    marks: dict[str, dict[str, tuple[int, int]]], started_at: dict[str, int]
) -> dict[str, list[float]]:
    """From chains whose steps are named s0..s19 and the client's start clock per instance."""
    launch: list[float] = []
    start: list[float] = []
    e2e: list[float] = []
    for instance, t0 in started_at.items():
        steps = marks.get(instance, {})
        names = [f"s{i}" for i in range(CHAIN_STEPS)]
        if not all(n in steps for n in names):
            continue  # an incomplete chain is reported by the caller, not averaged in
        for a, b in itertools.pairwise(names):
            launch.append((steps[b][0] - steps[a][1]) / 1000)
        start.append((steps["s0"][0] - t0) / 1000)
        e2e.append((steps[names[-1]][1] - t0) / 1000)
    return {"step_launch_ms": launch, "start_ms": start, "chain20_ms": e2e}


def fanout_metrics(
    marks: dict[str, dict[str, tuple[int, int]]], started_at: dict[str, int], join: str = "join"
) -> list[float]:
    return [
        (marks[i][join][1] - t0) / 1000 for i, t0 in started_at.items() if join in marks.get(i, {})
    ]


def throughput(marks: Iterable[tuple[int, int]], window: tuple[int, int]) -> float:
    """Step exits per second inside [window) (microseconds)."""
    lo, hi = window
    n = sum(1 for _, exit_ in marks if lo <= exit_ < hi)
    return n / ((hi - lo) / 1e6)


def write_result(path: str | os.PathLike[str], **fields: Any) -> None:
    """The one result format the driver reads. Keys:
    system, version (str), notes (str: what was tuned, what differs),
    step_launch_ms, start_ms, chain20_ms, fanout100_ms (lists of floats),
    throughput_steps_per_s (float), throughput_seconds (float), throughput_instances (int),
    errors (list of str: anything that did not complete)."""
    Path(path).write_text(json.dumps(fields, indent=1))


# --- Process and load helpers shared by the peers' run.py (stdlib only) ---------------------------


def start_process(
    args: list[str],
    log_path: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a server in its own process group (so stop_process can take its children down
    too), with stdout and stderr in one log file."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child process owns it
    return subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM to the whole process group, SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    finally:
        # Children that ignored SIGTERM may outlive the leader; the group id is still theirs.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_http(url: str, timeout: float, procs: Iterable[subprocess.Popen[bytes]] = ()) -> None:
    """Polls `url` until it answers anything below 500; fails early if one of `procs` died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode} while waiting for {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
            last = str(e)
        except OSError as e:
            last = str(e)
        time.sleep(0.25)
    raise TimeoutError(f"{url} not up after {timeout}s: {last}")


def closed_loop(
    run_one: Callable[[str], None], prefix: str, concurrency: int, seconds: float
) -> tuple[dict[str, int], int, list[str]]:
    """Keeps `concurrency` instances in flight for `seconds`: each thread starts the next
    instance as soon as its previous one finished. `run_one(name)` must start the instance and
    return when it has completed. Returns (client start clock per instance, completed count,
    errors)."""
    started: dict[str, int] = {}
    errors: list[str] = []
    completed = 0
    lock = threading.Lock()
    counter = itertools.count()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal completed
        while time.monotonic() < deadline:
            name = f"{prefix}{next(counter)}"
            started[name] = now_us()
            try:
                run_one(name)
            except Exception as e:  # a failed instance is counted, not fatal
                with lock:
                    errors.append(f"{name}: {e}")
                continue
            with lock:
                completed += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started, completed, errors
