"""Commands on a workflow: choose its active version, its breakpoints, list workflows."""

from __future__ import annotations

import argparse

from services.cli.client import Client


def cmd_activation(client: Client, args: argparse.Namespace) -> int:
    """`activate` (with an optional `--version`) or `deactivate`, from `args.activation`."""
    body = {"version": args.version} if getattr(args, "version", None) else None
    accepted = client.post(f"/workflows/{args.workflow}/actions/{args.activation}", body)
    print(f"{args.activation} {args.workflow}: accepted (command {accepted['command_id']})")
    return 0


def cmd_breakpoint(client: Client, args: argparse.Namespace) -> int:
    method = "PUT" if args.breakpoint_action == "set" else "DELETE"
    accepted = client.request(method, f"/workflows/{args.workflow}/breakpoints/{args.step}")
    print(
        f"breakpoint {args.breakpoint_action} on {args.workflow}/{args.step}: accepted"
        f" (command {accepted['command_id']})"
    )
    return 0


def cmd_breakpoints(client: Client, args: argparse.Namespace) -> int:
    for step_id in client.get(f"/workflows/{args.workflow}")["breakpoints"]:
        print(step_id)
    return 0


def cmd_workflows(client: Client, args: argparse.Namespace) -> int:
    for w in client.get("/workflows", limit=args.limit)["items"]:
        active = w.get("active_version")
        shown = f"active v{active}" if active else "no active version"
        print(
            f"{w['workflow_id']:<40}  latest v{w['latest_version']:<4}  {shown:<18}"
            f"  {w['updated_at']}"
        )
    return 0
