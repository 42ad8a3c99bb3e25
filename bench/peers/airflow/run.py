"""Airflow 3 peer: migrates its metadata DB (Postgres when --pg-url is given), starts the API
server, scheduler (LocalExecutor) and DAG processor, triggers the bench DAGs through the REST
API and writes the result.

Run with the peer's own venv (see requirements.txt):
    <workdir>/venv/bin/python bench/peers/airflow/run.py --out R.json --workdir <workdir> \
        --pg-url postgresql://postgres@127.0.0.1:5432/postgres [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_common import (
    Trace,
    chain_metrics,
    fanout_metrics,
    now_us,
    start_process,
    stop_process,
    throughput,
    wait_http,
    write_result,
)

HERE = Path(__file__).resolve().parent
API = "127.0.0.1:17880"
DB_NAME = "airflow_bench"
CHAIN_DAG = "bench_chain20"
FANOUT_DAG = "bench_fanout100"
# Airflow takes seconds per task: its sizes are capped so that one full run stays in minutes.
MAX_CHAINS = 5
MAX_FANOUTS = 2
WARMUP_S = 15.0  # the first dag runs of the closed loop start together; skip that ramp
POLL_S = 0.5

# What a user wanting low latency from one machine would set (see notes()).
TUNING: dict[str, str] = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
    "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "0",
    "AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE": "64",
    "AIRFLOW__SCHEDULER__MAX_DAGRUNS_TO_CREATE_PER_LOOP": "64",
    "AIRFLOW__CORE__PARALLELISM": "32",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "128",
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
}


@dataclass
class Args:
    out: str
    workdir: Path
    pg_url: str | None
    chains: int
    fanouts: int
    seconds: float
    concurrency: int


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--pg-url", default=None)
    p.add_argument("--chains", type=int, default=20)
    p.add_argument("--fanouts", type=int, default=5)
    p.add_argument("--throughput-seconds", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.chains, a.fanouts, a.throughput_seconds = 2, 1, 30.0
    return Args(
        out=a.out,
        workdir=Path(a.workdir).resolve(),
        pg_url=a.pg_url,
        chains=min(a.chains, MAX_CHAINS),
        fanouts=min(a.fanouts, MAX_FANOUTS),
        seconds=a.throughput_seconds,
        concurrency=a.concurrency,
    )


def recreate_database(pg_url: str) -> str:
    """Drops and creates DB_NAME next to the database in pg_url; returns its SQLAlchemy URL."""
    import psycopg2  # the venv has it through apache-airflow[postgres]

    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        conn.close()
    parts = urllib.parse.urlsplit(pg_url)
    return urllib.parse.urlunsplit(
        ("postgresql+psycopg2", parts.netloc, f"/{DB_NAME}", parts.query, "")
    )


def airflow_env(args: Args, db_url: str, trace: Path) -> dict[str, str]:
    home = args.workdir / "airflow-home"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(args.workdir / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # No login: the API treats every caller as admin (a local benchmark, bound to 127.0.0.1).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": API.split(":")[1],
        "AIRFLOW__API__BASE_URL": f"http://{API}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{API}/execution/",
        # The scheduler signs task tokens the API server checks: one shared secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # The scheduler serves task logs on 8793 by default: keep clear of other servers.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "17893",
        "BENCH_TRACE": str(trace),
        "BENCH_PEERS_DIR": str(HERE.parent),
        **TUNING,
    }


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate(args: Args, env: dict[str, str]) -> None:
    log = args.workdir / "db-migrate.log"
    with open(log, "wb") as out:
        rc = subprocess.run(
            [airflow_bin(), "db", "migrate"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        ).returncode
    if rc != 0:
        raise RuntimeError(f"airflow db migrate failed ({rc}); see {log}")


def start_components(args: Args, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    procs = []
    for component in ("api-server", "scheduler", "dag-processor"):
        cmd = [airflow_bin(), component]
        procs.append(start_process(cmd, args.workdir / f"{component}.log", env=env))
    return procs


def api(method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://{API}/api/v2{path}",
        data=data,
        method=method,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def wait_for_dags(procs: list[subprocess.Popen[bytes]], timeout: float = 300) -> None:
    """The DAG processor must have parsed and serialized both DAGs before they can run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode}")
        try:
            for dag in (CHAIN_DAG, FANOUT_DAG):
                d = api("GET", f"/dags/{dag}")
                if d.get("is_paused"):
                    api("PATCH", f"/dags/{dag}", {"is_paused": False})
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError("the bench DAGs were not parsed in time")


def trigger(dag: str, run_id: str) -> None:
    api("POST", f"/dags/{dag}/dagRuns", {"dag_run_id": run_id, "logical_date": None})


def active_runs(dag: str) -> set[str]:
    q = "state=queued&state=running&limit=100"
    return {r["dag_run_id"] for r in api("GET", f"/dags/{dag}/dagRuns?{q}")["dag_runs"]}


def run_loop(
    dag: str, prefix: str, concurrency: int, until: Callable[[int, int], bool]
) -> tuple[dict[str, int], int]:
    """Keeps `concurrency` dag runs of `dag` in flight, starting a new one as each finishes,
    until `until(started, completed)`; one polling thread (a thread per run polling the API
    server would load the same server the task processes report to). Returns (client start
    clock per run, completed runs)."""
    started: dict[str, int] = {}
    inflight: set[str] = set()
    completed = 0
    while not until(len(started), completed):
        while len(inflight) < concurrency and not until(len(started), completed):
            name = f"{prefix}{len(started)}"
            started[name] = now_us()
            trigger(dag, name)
            inflight.add(name)
        time.sleep(POLL_S)
        done = inflight - active_runs(dag)
        completed += len(done)
        inflight -= done
    return started, completed


def sequential(dag: str, prefix: str, count: int) -> dict[str, int]:
    # Start the next only after the previous finished: until() checks completions, not starts.
    started, _ = run_loop(dag, prefix, 1, lambda s, c: c >= count)
    return started


def measure(args: Args, trace: Trace, errors: list[str]) -> dict[str, Any]:
    sequential(CHAIN_DAG, "warm-", 1)  # first run pays imports and connection setup
    chains = sequential(CHAIN_DAG, "chain-", args.chains)
    fanouts = sequential(FANOUT_DAG, "fan-", args.fanouts)

    t0 = now_us()
    deadline = time.monotonic() + args.seconds
    tp_started, completed = run_loop(
        CHAIN_DAG, "tp-", args.concurrency, lambda s, c: time.monotonic() >= deadline
    )
    window = (t0 + int(WARMUP_S * 1e6), t0 + int(args.seconds * 1e6))

    marks = trace.load()
    cm = chain_metrics(marks, chains)
    fan = fanout_metrics(marks, fanouts)
    if len(cm["chain20_ms"]) < len(chains):
        errors.append(f"{len(chains) - len(cm['chain20_ms'])} chains incomplete")
    if len(fan) < len(fanouts):
        errors.append(f"{len(fanouts) - len(fan)} fanouts incomplete")
    exits = [m for name in tp_started for m in marks.get(name, {}).values()]
    return {
        **cm,
        "fanout100_ms": fan,
        "throughput_steps_per_s": throughput(exits, window),
        "throughput_seconds": (window[1] - window[0]) / 1e6,
        "throughput_instances": completed,
    }


def notes(args: Args, db: str) -> str:
    tuned = ", ".join(f"{k.removeprefix('AIRFLOW__').lower()}={v}" for k, v in TUNING.items())
    return (
        f"Airflow 3 with LocalExecutor on {db}; components started separately (api-server with "
        "1 uvicorn worker, scheduler, dag-processor; no triggerer: nothing defers). DAGs: 20 "
        "PythonOperator tasks chained; fan -> 100 PythonOperator -> join. Runs triggered "
        "through the REST API (POST /api/v2/dags/{id}/dagRuns); completion seen by one poller "
        f"every {POLL_S}s (does not enter the figures, which come from the in-task trace). "
        f"Tuned: {tuned}. Sizes capped: chains<={MAX_CHAINS} ({args.chains} run), "
        f"fanouts<={MAX_FANOUTS} ({args.fanouts} run); throughput closed loop of "
        f"{args.concurrency} chain20 runs for {args.seconds:.0f}s, first {WARMUP_S:.0f}s "
        "excluded from the window (the loop's runs all start together). throughput_instances "
        "counts runs completed before the deadline: at a few tasks per second, 50 concurrent "
        "20-task runs may complete none in 60 s; the step rate is the figure to compare."
    )


def version() -> str:
    from importlib.metadata import version as v

    return (
        f"apache-airflow {v('apache-airflow')} (task-sdk {v('apache-airflow-task-sdk')}, "
        f"providers-standard {v('apache-airflow-providers-standard')})"
    )


def prepare_workdir(args: Args) -> Path:
    for d in ("airflow-home", "dags"):
        shutil.rmtree(args.workdir / d, ignore_errors=True)
    (args.workdir / "dags").mkdir(parents=True)
    shutil.copy(HERE / "bench_dags.py", args.workdir / "dags" / "bench_dags.py")
    trace = args.workdir / "trace.txt"
    trace.unlink(missing_ok=True)
    return trace


def main() -> None:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    trace_path = prepare_workdir(args)
    errors: list[str] = []
    results: dict[str, Any] = {}
    procs: list[subprocess.Popen[bytes]] = []
    db = "Postgres" if args.pg_url else "SQLite"
    try:
        if args.pg_url:
            db_url = recreate_database(args.pg_url)
        else:
            db_url = f"sqlite:///{args.workdir / 'airflow-home' / 'airflow.db'}"
            errors.append("no --pg-url: SQLite metadata DB, not comparable")
        env = airflow_env(args, db_url, trace_path)
        migrate(args, env)
        procs = start_components(args, env)
        wait_http(f"http://{API}/api/v2/monitor/health", 180, procs)
        wait_for_dags(procs)
        results = measure(args, Trace(trace_path), errors)
    except Exception as e:  # the result file must still be written
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        for p in reversed(procs):
            stop_process(p, timeout=20)
    write_result(
        args.out,
        system="airflow",
        version=version(),
        notes=notes(args, db),
        errors=errors,
        **results,
    )


if __name__ == "__main__":
    main()
