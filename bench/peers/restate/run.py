"""Restate peer: starts restate-server (npm package) and the Python SDK service, registers the
deployment, runs chain20 / fanout100 / throughput for both step styles, writes the result.

Run with the peer's own venv (see requirements.txt and setup.sh):
    <workdir>/venv/bin/python bench/peers/restate/run.py --out R.json --workdir <workdir> [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_common import (
    Trace,
    chain_metrics,
    closed_loop,
    fanout_metrics,
    now_us,
    start_process,
    stop_process,
    throughput,
    wait_http,
    write_result,
)

HERE = Path(__file__).resolve().parent
SERVER_VERSION = "1.7.12"  # keep in step with setup.sh
INGRESS = "127.0.0.1:17080"
ADMIN = "127.0.0.1:17070"
FABRIC = "127.0.0.1:17122"
SERVICE = "127.0.0.1:17090"
WARMUP_S = 5.0


@dataclass
class VariantResult:
    step_launch_ms: list[float] = field(default_factory=list)
    start_ms: list[float] = field(default_factory=list)
    chain20_ms: list[float] = field(default_factory=list)
    fanout100_ms: list[float] = field(default_factory=list)
    throughput_steps_per_s: float = 0.0
    throughput_seconds: float = 0.0
    throughput_instances: int = 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--pg-url", default=None, help="unused: Restate keeps its own log and state")
    p.add_argument("--chains", type=int, default=20)
    p.add_argument("--fanouts", type=int, default=5)
    p.add_argument("--throughput-seconds", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--service-workers", type=int, default=1, help="hypercorn worker processes")
    args = p.parse_args()
    if args.quick:
        args.chains, args.fanouts, args.throughput_seconds = 3, 1, 10.0
    return args


def server_env(data_dir: Path) -> dict[str, str]:
    """Restate reads every config key from RESTATE_<SECTION>__<KEY>; the defaults (8080, 9070,
    5122) clash with other servers on this machine."""
    return {
        "RESTATE_INGRESS__BIND_ADDRESS": INGRESS,
        "RESTATE_ADMIN__BIND_ADDRESS": ADMIN,
        "RESTATE_BIND_ADDRESS": FABRIC,
        "RESTATE_ADVERTISED_ADDRESS": f"http://{FABRIC}/",
        "RESTATE_LISTEN_MODE": "tcp",
        "RESTATE_NODE_NAME": "bench",
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_LOG_FILTER": "warn",
        # 24 partitions by default: one partition processor each, more than 2 cores can use.
        "RESTATE_DEFAULT_NUM_PARTITIONS": "4",
        # The default invocation retry starts at 500 ms; nothing fails here, but keep it quick.
        "RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "50ms",
    }


def start_server(workdir: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    # setup.sh installs the npm package inside the venv this script runs in.
    binary = Path(sys.prefix) / "restate-server" / "node_modules" / ".bin" / "restate-server"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} missing: run setup.sh with VENV={sys.prefix}")
    args = [str(binary), "--no-logo", "--base-dir", str(data_dir)]
    return start_process(args, workdir / "restate-server.log", env=server_env(data_dir))


def start_service(workdir: Path, trace: Path, workers: int) -> subprocess.Popen[bytes]:
    """Hypercorn as the SDK docs recommend for production: HTTP/2 cleartext, unlimited streams."""
    config = workdir / "hypercorn.toml"
    config.write_text(
        f'bind = "{SERVICE}"\n'
        "h2_max_concurrent_streams = 2147483647\n"
        "keep_alive_max_requests = 2147483647\n"
        "keep_alive_timeout = 2147483647\n"
        f"workers = {workers}\n"
        'loglevel = "WARNING"\n'
    )
    pythonpath = os.pathsep.join([str(HERE), str(HERE.parent)])
    args = [sys.executable, "-m", "hypercorn", "--config", str(config), "service:app"]
    env = {"BENCH_TRACE": str(trace), "PYTHONPATH": pythonpath}
    return start_process(args, workdir / "service.log", env=env, cwd=HERE)


def post(url: str, body: Any, timeout: float = 300.0) -> bytes:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def register() -> None:
    post(f"http://{ADMIN}/deployments", {"uri": f"http://{SERVICE}", "force": True}, timeout=60)


def invoke(handler: str, instance: str) -> None:
    """Calls a Bench handler through the ingress and waits for its result (request-response)."""
    post(f"http://{INGRESS}/Bench/{handler}", instance)


def sequential(handler: str, prefix: str, count: int) -> dict[str, int]:
    started: dict[str, int] = {}
    for i in range(count):
        name = f"{prefix}{i}"
        started[name] = now_us()
        invoke(handler, name)
    return started


def run_variant(
    style: str, args: argparse.Namespace, trace: Trace, errors: list[str]
) -> VariantResult:
    """style is "run" (ctx.run steps) or "call" (steps as calls to the Step service)."""
    res = VariantResult()
    invoke(f"chain_{style}", f"warm-{style}")  # first invocation pays connection setup
    chains = sequential(f"chain_{style}", f"{style}-chain-", args.chains)
    fanouts = sequential(f"fanout_{style}", f"{style}-fan-", args.fanouts)

    t0 = now_us()
    tp_started, completed, tp_errors = closed_loop(
        lambda name: invoke(f"chain_{style}", name),
        f"{style}-tp-",
        args.concurrency,
        args.throughput_seconds,
    )
    # Instances still in flight at the deadline drain with fewer than `concurrency` running:
    # the window ends at the deadline, not when the last one finishes.
    t1 = t0 + int(args.throughput_seconds * 1e6)
    errors.extend(f"{style} throughput {e}" for e in tp_errors[:20])

    marks = trace.load()
    cm = chain_metrics(marks, chains)
    res.step_launch_ms, res.start_ms, res.chain20_ms = (
        cm["step_launch_ms"],
        cm["start_ms"],
        cm["chain20_ms"],
    )
    res.fanout100_ms = fanout_metrics(marks, fanouts)
    if len(res.chain20_ms) < len(chains):
        errors.append(f"{style}: {len(chains) - len(res.chain20_ms)} chains incomplete")
    if len(res.fanout100_ms) < len(fanouts):
        errors.append(f"{style}: {len(fanouts) - len(res.fanout100_ms)} fanouts incomplete")

    window = (t0 + int(WARMUP_S * 1e6), t1)
    exits = [m for name in tp_started for m in marks.get(name, {}).values()]
    res.throughput_steps_per_s = throughput(exits, window)
    res.throughput_seconds = (window[1] - window[0]) / 1e6
    res.throughput_instances = completed
    return res


def result_fields(main: VariantResult, other: VariantResult) -> dict[str, Any]:
    fields: dict[str, Any] = {k: v for k, v in vars(main).items()}
    fields.update({f"service_call_{k}": v for k, v in vars(other).items()})
    return fields


def notes(args: argparse.Namespace) -> str:
    return (
        "Main figures: each step is a ctx.run side effect inside one handler invocation "
        "(Bench/chain_run, fanout via restate.gather of 100 ctx.run); service_call_* keys: each "
        "step is a durable call to a handler of a second service (Step/step). Instances are "
        "plain Service invocations called through the ingress with request-response HTTP "
        "(client start clock before the POST). Single restate-server node (all roles, local "
        f"RocksDB + replicated loglet, data under workdir); default-num-partitions=4 (default "
        "24, too many for 2 cores), default retry initial interval 50ms, telemetry off. SDK "
        f"served by hypercorn (HTTP/2 h2c, {args.service_workers} worker process(es), the SDK "
        "docs' production settings). Throughput: closed loop of chain20 instances, "
        f"{WARMUP_S:.0f}s warm-up excluded from the window; both styles measured."
    )


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "restate-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    trace_path = workdir / "trace.txt"
    trace_path.unlink(missing_ok=True)
    trace = Trace(trace_path)
    errors: list[str] = []
    results: dict[str, Any] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_server(workdir, data_dir))
        procs.append(start_service(workdir, trace_path, args.service_workers))
        wait_http(f"http://{ADMIN}/health", 120, procs)
        wait_http(f"http://{INGRESS}/restate/health", 120, procs)
        wait_http(f"http://{SERVICE}/discover", 60, procs)
        register()
        run_res = run_variant("run", args, trace, errors)
        call_res = run_variant("call", args, trace, errors)
        results = result_fields(run_res, call_res)
    except Exception as e:  # the result file must still be written
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        for p in reversed(procs):
            stop_process(p)
    write_result(
        args.out,
        system="restate",
        version=f"restate-server {SERVER_VERSION}, restate-sdk (python) 1.3.0, hypercorn 0.18.0",
        notes=notes(args),
        errors=errors,
        **results,
    )


if __name__ == "__main__":
    main()
