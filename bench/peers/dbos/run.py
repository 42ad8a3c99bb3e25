"""DBOS peer: the shared workloads as DBOS Transact workflows on PostgreSQL, in two variants.

- inline (the main result keys): every step is a `@DBOS.step()` called from a
  `@DBOS.workflow()`; steps run in the workflow's own process and thread, each checkpointed
  in Postgres. This is DBOS's own model: no separate step worker exists.
- queue (keys prefixed `queue_`): every step is enqueued on a DBOS queue as a child workflow
  (wrapping the same `@DBOS.step()`) and run by a SEPARATE worker process that listens on that
  queue; the parent workflow waits for its result. This is how DBOS distributes work across
  processes, and the closest shape to Baton's steps on workers.

Run by the driver with this peer's own venv; `--role queue-worker` runs the step worker:
    <venv>/bin/python run.py --out R.json --workdir DIR --pg-url postgresql://... [--chains N ...]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SELF = Path(__file__).resolve()
sys.path.insert(0, str(SELF.parent.parent))  # peer_common

import peer_common as pc  # noqa: E402
import psycopg  # noqa: E402
from dbos import DBOS, DBOSConfig, Queue  # noqa: E402

DATABASE = "dbos_bench"
QUEUE = "bench_steps"
# DBOS's default queue poll is 1 s and a waiting handle polls once a second: tuned down, as a
# DBOS user would for latency, to 10 ms. Lower polls Postgres harder for no visible gain here.
QUEUE_POLL_S = 0.01
RESULT_POLL_S = 0.01
POOL_MAIN = 60  # > concurrency: each in-flight workflow checks out connections
POOL_WORKER = 30
WARMUP_S = 5.0
FANOUT_WIDTH = pc.FANOUT_WIDTH

NOTES = (
    "DBOS Transact on PostgreSQL (system database `dbos_bench`, dropped and recreated each "
    "run, on the given server). Main keys = INLINE variant: @DBOS.step() no-ops called in "
    "order from a @DBOS.workflow() in the same process (DBOS's native model; a step 'launch' "
    "is the step's checkpoint write plus the next step's start); fanout100's 100 parallel "
    "steps are child workflows started with DBOS.start_workflow (each wrapping the same "
    "@DBOS.step()), run on the process's executor threads, since a sync workflow cannot run "
    "steps concurrently otherwise. Keys prefixed queue_ = QUEUE variant: every step (fan, "
    "join, s0..s19 and the 100) is enqueued on DBOS queue bench_steps as a child workflow "
    "wrapping the @DBOS.step(), dequeued by ONE separate worker process (DBOS.listen_queues; "
    "the main process listens to no queue), the parent waits on the handle. Tuned: queue "
    f"polling_interval_sec={QUEUE_POLL_S} (default 1.0), handle get_result "
    f"polling_interval_sec={RESULT_POLL_S} (default 1.0), sys_db_pool_size {POOL_MAIN} main / "
    f"{POOL_WORKER} worker (default 20), no queue concurrency limits, LISTEN/NOTIFY on "
    "(default). Client = DBOS.start_workflow + get_result in the main process (the workflow "
    "runs in that same process). One unmeasured chain20 and fanout100 per variant first. "
    f"Throughput: closed loop of `concurrency` chain20 (client threads), {WARMUP_S:.0f} s "
    "warm-up excluded."
)

# --- workflows: module level, so both processes register the same names --------------------


@DBOS.step()
def noop(trace: str, instance: str, step: str) -> None:
    pc.noop_step(pc.Trace(trace), instance, step)


@DBOS.workflow()
def step_wf(trace: str, instance: str, step: str) -> None:
    """One step as a child workflow: the unit a queue can hand to another process."""
    noop(trace, instance, step)


@DBOS.workflow()
def chain20(trace: str, instance: str) -> None:
    for i in range(pc.CHAIN_STEPS):
        noop(trace, instance, f"s{i}")


@DBOS.workflow()
def fanout100(trace: str, instance: str) -> None:
    noop(trace, instance, "fan")
    handles = [DBOS.start_workflow(step_wf, trace, instance, f"f{i}") for i in range(FANOUT_WIDTH)]
    for h in handles:
        h.get_result()
    noop(trace, instance, "join")


def _queue() -> Queue:
    q = DBOS.retrieve_queue(QUEUE)
    if q is None:
        raise RuntimeError(f"DBOS queue {QUEUE} is not registered")
    return q


def _queued_step(trace: str, instance: str, step: str) -> None:
    _queue().enqueue(step_wf, trace, instance, step).get_result(polling_interval_sec=RESULT_POLL_S)


@DBOS.workflow()
def chain20_q(trace: str, instance: str) -> None:
    for i in range(pc.CHAIN_STEPS):
        _queued_step(trace, instance, f"s{i}")


@DBOS.workflow()
def fanout100_q(trace: str, instance: str) -> None:
    _queued_step(trace, instance, "fan")
    q = _queue()
    handles = [q.enqueue(step_wf, trace, instance, f"f{i}") for i in range(FANOUT_WIDTH)]
    for h in handles:
        h.get_result(polling_interval_sec=RESULT_POLL_S)
    _queued_step(trace, instance, "join")


# --- processes ------------------------------------------------------------------------------


def db_url(pg_url: str) -> str:
    """The same server as `pg_url`, database DATABASE (psycopg 3 driver for SQLAlchemy)."""
    parts = urlsplit(pg_url)
    return urlunsplit(("postgresql+psycopg", parts.netloc, f"/{DATABASE}", parts.query, ""))


def recreate_database(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def launch(pg_url: str, executor_id: str, pool: int, queues: list[str]) -> None:
    config: DBOSConfig = {
        "name": "baton-peer-bench",
        "system_database_url": db_url(pg_url),
        "sys_db_pool_size": pool,
        "executor_id": executor_id,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.listen_queues(queues)
    DBOS.launch()
    DBOS.register_queue(QUEUE, polling_interval_sec=QUEUE_POLL_S)


def run_queue_worker(pg_url: str, ready: Path) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    launch(pg_url, "bench-queue-worker", POOL_WORKER, [QUEUE])
    ready.write_text("ready\n")
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=0)


# --- the benchmark --------------------------------------------------------------------------


def one_at_a_time(
    wf: Callable[[str, str], None], prefix: str, n: int, trace: str, errors: list[str]
) -> dict[str, int]:
    started: dict[str, int] = {}
    for i in range(n):
        name = f"{prefix}{i}"
        started[name] = pc.now_us()
        try:
            DBOS.start_workflow(wf, trace, name).get_result(polling_interval_sec=RESULT_POLL_S)
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
    return started


def variant(
    key: str,
    chain: Callable[[str, str], None],
    fan: Callable[[str, str], None],
    args: argparse.Namespace,
    sizes: tuple[int, int, float],
    workdir: Path,
    errors: list[str],
) -> dict[str, Any]:
    """Every workload for one variant; result keys prefixed with `key`."""
    chains, fanouts, seconds = sizes
    warmup_s = min(WARMUP_S, seconds / 4)
    out: dict[str, Any] = {}
    warm = str(workdir / f"{key}trace-warmup.txt")
    # Warm-up, unmeasured, through start_workflow like the measured runs.
    one_at_a_time(chain, f"{key}warm-chain-", 1, warm, errors)
    one_at_a_time(fan, f"{key}warm-fan-", 1, warm, errors)

    trace = pc.Trace(workdir / f"{key}trace-chain.txt")
    started = one_at_a_time(chain, f"{key}chain-", chains, trace.path, errors)
    for k, v in pc.chain_metrics(trace.load(), started).items():
        out[key + k] = v
    if len(out[key + "chain20_ms"]) < chains:
        errors.append(f"{key}chain20: {chains - len(out[key + 'chain20_ms'])} incomplete")

    trace = pc.Trace(workdir / f"{key}trace-fanout.txt")
    started = one_at_a_time(fan, f"{key}fan-", fanouts, trace.path, errors)
    out[key + "fanout100_ms"] = pc.fanout_metrics(trace.load(), started)

    trace = pc.Trace(workdir / f"{key}trace-throughput.txt")

    def run_one(name: str) -> None:
        DBOS.start_workflow(chain, trace.path, name).get_result(polling_interval_sec=RESULT_POLL_S)

    t0 = pc.now_us()
    _, completed, tp_errors = pc.closed_loop(run_one, f"{key}tp-", args.concurrency, seconds)
    errors += tp_errors[:5] + ([f"... and {len(tp_errors) - 5} more"] if len(tp_errors) > 5 else [])
    window = (t0 + int(warmup_s * 1e6), t0 + int(seconds * 1e6))
    exits = [m for steps in trace.load().values() for m in steps.values()]
    out[key + "throughput_steps_per_s"] = pc.throughput(exits, window)
    out[key + "throughput_seconds"] = seconds - warmup_s
    out[key + "throughput_instances"] = completed
    return out


def bench(args: argparse.Namespace, workdir: Path) -> None:
    chains, fanouts, seconds = args.chains, args.fanouts, float(args.throughput_seconds)
    if args.quick:
        chains, fanouts, seconds = min(chains, 3), min(fanouts, 1), min(seconds, 10.0)
    errors: list[str] = []
    result: dict[str, Any] = {"system": "dbos", "notes": NOTES, "errors": errors}
    procs: list[subprocess.Popen[bytes]] = []
    launched = False
    try:
        if not args.pg_url:
            raise RuntimeError("--pg-url is required: DBOS runs on PostgreSQL here")
        with psycopg.connect(args.pg_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "?"
        result["version"] = (
            f"dbos {importlib.metadata.version('dbos')} (DBOS Transact Python), "
            f"psycopg {importlib.metadata.version('psycopg')}, "
            f"sqlalchemy {importlib.metadata.version('sqlalchemy')}, PostgreSQL {pg_version}"
        )
        recreate_database(args.pg_url)
        # The main process migrates the fresh system database before the worker connects.
        launch(args.pg_url, "bench-main", POOL_MAIN, [])
        launched = True
        ready = workdir / "queue-worker.ready"
        worker = pc.start_process(
            [
                sys.executable,
                str(SELF),
                "--role",
                "queue-worker",
                "--pg-url",
                args.pg_url,
                "--workdir",
                str(workdir),
            ],
            workdir / "queue-worker.log",
        )
        procs.append(worker)
        deadline = time.monotonic() + 60
        while not ready.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the queue worker did not start (see queue-worker.log)")
            time.sleep(0.1)

        sizes = (chains, fanouts, seconds)
        for key, chain, fan in (("", chain20, fanout100), ("queue_", chain20_q, fanout100_q)):
            try:
                result.update(variant(key, chain, fan, args, sizes, workdir, errors))
            except Exception as e:
                errors.append(f"{key or 'inline_'}variant: {type(e).__name__}: {e}")
        result["concurrency"] = args.concurrency
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        for p in procs:
            pc.stop_process(p)
        if launched:
            try:
                DBOS.destroy(workflow_completion_timeout_sec=0)
            except Exception as e:  # the result matters more than a clean shutdown
                errors.append(f"DBOS.destroy: {type(e).__name__}: {e}")
        pc.write_result(args.out, **result)


def _sigterm(_signum: int, _frame: Any) -> None:
    # The driver's deadline sends SIGTERM: unwind through `finally` so the worker stops.
    raise SystemExit(143)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["bench", "queue-worker"])
    ap.add_argument("--out", default="result.json")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--pg-url")
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--fanouts", type=int, default=5)
    ap.add_argument("--throughput-seconds", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.role == "queue-worker":
        run_queue_worker(args.pg_url, workdir / "queue-worker.ready")
        return
    signal.signal(signal.SIGTERM, _sigterm)
    bench(args, workdir)


if __name__ == "__main__":
    main()
