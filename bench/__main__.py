"""`make bench`: Baton's benchmark on a fresh local stack, then the peers, then the report.

    .venv/bin/python -m bench [--quick] [--phases latency,throughput,recovery]
                              [--peers temporal,dbos,restate,airflow | --no-peers]

Writes the raw figures to .baton-bench/results.json and rewrites the generated part of
docs/benchmarks.md and its plots (docs/bench/*.png).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bench import environment, report
from bench.history import history
from bench.loops import foreach
from bench.peers import driver
from bench.phases import PHASES, PhaseContext, Sizes
from services.adapters import infra
from services.adapters.settings import REPO_ROOT, Settings

BENCH_HOME = REPO_ROOT / ".baton-bench"
# The phases, in the order a full run goes through them.
ALL_PHASES = {**PHASES, "foreach": foreach, "history": history}
# Ports of the benchmark's own stack: below the ephemeral range, apart from dev and tests.
BENCH_ENV = {
    "BATON_HOME": str(BENCH_HOME / "stack"),
    "KAFKA_PORT": "19692",
    "KAFKA_CONTROLLER_PORT": "19693",
    "BATON_PG_PORT": "16032",
    "BATON_API_PORT": "18680",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--phases", default=",".join(ALL_PHASES), help="comma-separated phases")
    parser.add_argument("--chains", type=int, help="latency: 20-step chains, one at a time")
    parser.add_argument("--fanouts", type=int, help="latency: 100-way fan-outs, one at a time")
    parser.add_argument("--concurrency", type=int, help="throughput: chains in flight")
    parser.add_argument("--workers", type=int, help="throughput: worker processes")
    parser.add_argument("--throughput-seconds", type=float, help="throughput: measured window")
    parser.add_argument(
        "--live", type=lambda v: tuple(int(x) for x in v.split(",")), help="memory: e.g. 1000,10000"
    )
    parser.add_argument(
        "--history",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        help="history: finished instances seeded, e.g. 0,10000,100000,1000000",
    )
    parser.add_argument("--iterations", type=int, help="foreach: iterations of the one loop")
    parser.add_argument("--peers", default="temporal,dbos,restate,airflow")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="results.json only")
    parser.add_argument(
        "--report-only", type=Path, metavar="RESULTS", help="re-render a results.json; run nothing"
    )
    parser.add_argument("--out", type=Path, default=BENCH_HOME / "results.json")
    return parser.parse_args(argv)


def bench_settings() -> Settings:
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    return Settings.from_env()


async def run_baton(phases: list[str], sizes: Sizes) -> dict[str, Any]:
    settings = bench_settings()
    ctx = PhaseContext(settings, BENCH_HOME / "logs", sizes)
    results: dict[str, Any] = {}
    for name in phases:
        logging.info("phase %s", name)
        try:
            results[name] = await ALL_PHASES[name](ctx)
        except Exception as err:
            # One phase failing must not throw away the others' figures: the report says
            # which phase failed and why, and the run exits non-zero.
            logging.exception("phase %s failed", name)
            results[name] = {"error": f"{type(err).__name__}: {err}"}
    return results


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    overrides = {
        "chains": args.chains,
        "fanouts": args.fanouts,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "throughput_seconds": args.throughput_seconds,
        "memory_points": args.live,
        "foreach_iterations": args.iterations,
        "history_points": args.history,
    }
    sizes = dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    phases = [p for p in args.phases.split(",") if p]
    unknown = [p for p in phases if p not in ALL_PHASES]
    if unknown:
        raise SystemExit(f"unknown phases {unknown}; expected some of {list(ALL_PHASES)}")
    if args.report_only:
        stored: dict[str, Any] = json.loads(args.report_only.read_text())
        doc = report.write(stored, environment.describe(), stored.get("when", "unknown"))
        logging.info("wrote %s", doc)
        return 0
    command = "python -m bench " + " ".join(argv)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {"command": command.strip(), "quick": args.quick, "when": when}
    results["baton"] = asyncio.run(run_baton(phases, sizes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    if not args.no_peers:
        results["peers"] = run_peers([p for p in args.peers.split(",") if p], sizes, args.quick)
        args.out.write_text(json.dumps(results, indent=1))
    logging.info("wrote %s", args.out)
    if not args.no_report:
        doc = report.write(results, environment.describe(), when)
        logging.info("wrote %s", doc)
    failed = [k for k, v in results["baton"].items() if "error" in v]
    return 1 if failed else 0


def run_peers(names: list[str], sizes: Sizes, quick: bool) -> list[dict[str, Any]]:
    """The same workloads in each peer, after Baton's phases (so nothing competes), with
    PostgreSQL (DBOS and Airflow use it) from the benchmark's own stack."""
    settings = bench_settings()
    infra.start_postgres(settings)
    try:
        return driver.run_peers(
            names,
            settings.database_url,
            driver.Sizes(
                chains=sizes.chains,
                fanouts=sizes.fanouts,
                throughput_seconds=int(sizes.throughput_seconds),
                concurrency=sizes.concurrency,
                quick=quick,
            ),
            BENCH_HOME / "peers.json",
            BENCH_HOME / "peers",
        )
    finally:
        infra.stop_postgres(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
