"""`baton signal` (send one) and `baton signals` (list those received)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.cli.client import Client
from services.domain.kernel.documents import load_json
from services.domain.kernel.errors import DefinitionError


def cmd_signal(client: Client, args: argparse.Namespace) -> int:
    """Exit 2, before any request, when `--payload` is not bounded JSON."""
    body: dict[str, Any] = {"name": args.name, "params": dict(args.param)}
    if args.payload is not None:
        try:
            body["payload"] = load_json(args.payload)
        except DefinitionError as err:
            print(f"error: --payload: {err}", file=sys.stderr)
            return 2
        except ValueError as err:
            print(f"error: --payload is not JSON: {err}", file=sys.stderr)
            return 2
    if args.request_id:
        body["request_id"] = args.request_id
    accepted = client.post("/signals", body)
    print(f"signal {args.name}: accepted (request {accepted['request_id']})")
    return 0


def cmd_signals(client: Client, args: argparse.Namespace) -> int:
    for s in client.get("/signals", name=args.name, limit=args.limit)["items"]:
        params = json.dumps(s["params"], separators=(",", ":"), ensure_ascii=False)
        print(
            f"{s['name']:<30}  #{s['signal_seq']:<6}  woke {s['woken']:<3}  {s['received_at']}"
            f"  {params}"
        )
    return 0
