"""Commands on instances: start one, read it (status, events, watch), act on it or on one
of its steps, list them."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from services.cli.client import Client
from services.cli.watch import TERMINAL, render, watch


def cmd_start(client: Client, args: argparse.Namespace) -> int:
    """Prints the new instance's id; with `--watch`, exit 0 iff it ends SUCCEEDED."""
    body: dict[str, Any] = {"version": args.version, "params": dict(args.param)}
    if args.key:
        body["idempotency_key"] = args.key
    accepted = client.post(f"/workflows/{args.workflow}/instances", body)
    print(accepted["instance_id"])
    if args.watch:
        return 0 if watch(client, accepted["instance_id"]) == "SUCCEEDED" else 1
    return 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    instance = client.get(f"/instances/{args.id}", wait_seconds=args.wait)
    if args.json:
        print(json.dumps(instance, indent=2))
        return 0
    steps = client.get(f"/instances/{args.id}/steps")
    attempts = client.get(f"/instances/{args.id}/attempts")
    print("\n".join(render(instance, steps, attempts)))
    return 0


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    """Pages through the history; with `--follow`, polls until the instance is terminal."""
    after = args.after
    while True:
        page = client.get(f"/instances/{args.id}/events", after_seq=after, limit=1000)
        for e in page["items"]:
            payload = e["payload"] if args.full else _abbreviate(e["payload"])
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            print(f"{e['seq']:>5}  {e['occurred_at']}  {e['type']:<22}  {text}")
        after = page["next_after_seq"]
        if page["items"]:
            continue
        if not args.follow or client.get(f"/instances/{args.id}")["status"] in TERMINAL:
            return 0
        time.sleep(0.2)


def _abbreviate(payload: dict[str, Any], width: int = 60) -> dict[str, Any]:
    """Long strings (definitions, output tails) cut to `width` characters."""
    return {
        k: v[: width - 1] + "…" if isinstance(v, str) and len(v) > width else v
        for k, v in payload.items()
    }


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    status = watch(client, args.id)
    return 0 if status == "SUCCEEDED" else 1


def cmd_action(client: Client, args: argparse.Namespace) -> int:
    """One handler for stop, kill, restart, pause, resume and unblock (`args.action`); only
    restart has `--mode`, `--step` and `-p`, only stop, kill and pause have `--reason`."""
    body: dict[str, Any] = {"mode": args.mode} if args.action == "restart" else {}
    if args.action == "restart" and args.param:
        body["params"] = dict(args.param)
    if args.action == "restart" and args.step:
        body["mode"], body["step"] = "FROM_STEP", args.step
    if args.action != "restart" and getattr(args, "reason", ""):
        body["reason"] = args.reason
    accepted = client.post(f"/instances/{args.id}/actions/{args.action}", body or None)
    print(f"{args.action} {args.id}: accepted (command {accepted['command_id']})")
    return 0


def cmd_step_action(client: Client, args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if args.reason else None
    path = f"/instances/{args.id}/steps/{args.step}/actions/{args.step_action}"
    accepted = client.post(path, body)
    print(f"{args.step_action} {args.id}/{args.step}: accepted (command {accepted['command_id']})")
    return 0


def cmd_instances(client: Client, args: argparse.Namespace) -> int:
    page = client.get(
        "/instances",
        workflow_id=args.workflow,
        status=args.status,
        parent_instance_id=args.parent,
        top_level="true" if args.top_level else None,
        limit=args.limit,
    )
    for i in page["items"]:
        print(
            f"{i['instance_id']}  {i['workflow_id']:<30}  v{i['version']:<3}  "
            f"run {i['run']:<2}  {i['status']:<12}  {i['created_at']}"
        )
    return 0
