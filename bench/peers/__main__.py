"""`python -m bench.peers`: run peer workflow systems side by side with Baton's workloads."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.peers.driver import Sizes, available_peers, run_peers, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    ap.add_argument("--only", help=f"comma-separated subset of: {','.join(available_peers())}")
    ap.add_argument("--pg-url", help="a PostgreSQL server for peers that need one (DBOS)")
    ap.add_argument("--out", type=Path, default=Path(".baton-bench/peers.json"))
    ap.add_argument("--workroot", type=Path, default=Path(".baton-bench/peers"))
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--fanouts", type=int, default=5)
    ap.add_argument("--throughput-seconds", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    sizes = Sizes(args.chains, args.fanouts, args.throughput_seconds, args.concurrency, args.quick)
    results = run_peers(names, args.pg_url, sizes, args.out, args.workroot)
    for r in results:
        print(f"{r.get('system', r.get('peer'))}: {summary(r)}")
    print(f"wrote {args.out}")
    return 1 if any(r.get("errors") for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
