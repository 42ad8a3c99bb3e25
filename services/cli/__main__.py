"""`baton`: run a local stack, push workflows, start and watch instances.

    baton run                          the whole stack, a sample workflow, until Ctrl-C
    baton push FILE...                 push definitions, wait until each version is visible
    baton activate WF [--version N] | baton deactivate WF   choose the active version
    baton validate FILE...             check definitions, push nothing
    baton start WORKFLOW [-p k=v]...   start an instance; prints its id
    baton status|watch|events ID       read an instance
    baton stop|kill|restart|pause|resume|unblock ID   act on an instance (restart: -p k=v, --step S)
    baton step skip|stop|restart|pause|resume|bypass-signals ID STEP   act on one step
    baton breakpoint set|clear WF STEP | baton breakpoints WF   breakpoints for all instances
    baton signal NAME [-p k=v]... [--payload JSON] [--request-id R]   send a signal
    baton workflows | instances | signals   list

Every command but `run` talks HTTP to the API (`--api`, default from the settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from services.adapters.settings import REPO_ROOT, Settings
from services.cli.client import ApiError, Client, Unreachable, print_problem
from services.cli.push import PUSH_WAIT_S, media_type, push_files, workflow_id_of
from services.cli.stack import ChildFailing, HangWatch, Stack, api_url, prepare
from services.cli.watch import TERMINAL, render, watch
from services.domain.kernel.documents import load_json
from services.domain.kernel.errors import DefinitionError

EXAMPLES = REPO_ROOT / "examples"
SAMPLE = "hello_diamond.yaml"
API_START_S = 60.0
PROBE_EVERY_S = 5.0  # `baton run` asks the API's /health this often (HangWatch)


def _param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        value = load_json(raw)  # 10, true, [1,2], {"a":1}, "quoted"; bounded in depth
    except DefinitionError as err:
        raise argparse.ArgumentTypeError(f"{name}: {err}") from None
    except ValueError:
        value = raw  # a bare word is a string
    return name, value


def _add_param_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "-p",
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=help_text,
    )


def _version(text: str) -> int | str:
    if text in ("latest", "active", "default"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'default', 'active' or 'latest', got {text!r}"
        ) from None


# -- commands ----------------------------------------------------------------------------


def cmd_push(client: Client, args: argparse.Namespace) -> int:
    return 1 if push_files(client, args.files, args.timeout) else 0


def cmd_validate(client: Client, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        headers = {"content-type": media_type(path)}
        try:
            client.post("/workflows/validate", content=path.read_bytes(), headers=headers)
            print(f"{path}: valid")
        except ApiError as err:
            print_problem(err, prefix=f"{path}: ")
            failed += 1
    return 1 if failed else 0


def cmd_start(client: Client, args: argparse.Namespace) -> int:
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


def cmd_step_action(client: Client, args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if args.reason else None
    path = f"/instances/{args.id}/steps/{args.step}/actions/{args.step_action}"
    accepted = client.post(path, body)
    print(f"{args.step_action} {args.id}/{args.step}: accepted (command {accepted['command_id']})")
    return 0


def cmd_signal(client: Client, args: argparse.Namespace) -> int:
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


def cmd_action(client: Client, args: argparse.Namespace) -> int:
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


def cmd_activation(client: Client, args: argparse.Namespace) -> int:
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


def _answers(url: str) -> bool:
    """Any HTTP answer (a 503 too: the API is alive, its dependencies are not)."""
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The whole stack in the foreground, until Ctrl-C or SIGTERM."""

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop the stack even when SIGINT was inherited as ignored (a shell that
    # started us in the background, some CI runners).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log_dir = settings.home / "logs"
    print("preparing Kafka and PostgreSQL (the first start downloads Kafka) ...", flush=True)
    try:
        asyncio.run(prepare(settings))
    except Exception as err:  # the command's boundary: say what failed, not a traceback
        print(f"error: could not prepare Kafka and PostgreSQL: {type(err).__name__}: {err}")
        return 1
    stack = Stack(settings, log_dir)
    url = api_url(settings)
    try:
        stack.start("engine")
        stack.start("worker", "--queue", "default", "--concurrency", str(args.concurrency))
        stack.start("projector")
        stack.start("api")
        asyncio.run(stack.wait_api(API_START_S))
        print(f"engine, worker, projector and API started; logs in {log_dir}", flush=True)
        with Client(url) as client:
            files = sorted(
                p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".yaml", ".yml", ".json")
            )
            push_files(client, files)
            if files and not args.no_sample:
                sample = EXAMPLES / SAMPLE if (EXAMPLES / SAMPLE).exists() else files[0]
                workflow_id = workflow_id_of(sample.read_bytes())
                accepted = client.post(f"/workflows/{workflow_id}/instances", {"initiator": "cli"})
                print(f"\nstarted {workflow_id}: {accepted['instance_id']}\n", flush=True)
                status = watch(client, accepted["instance_id"])
                print(f"\n{workflow_id} ended {status}")
        print(
            f"\nBaton is running.\n  API      {url}/api/v1  (docs {url}/docs)\n"
            f"  registry {url}/registry\n  logs     {log_dir}\n"
            f"Try: baton push FILE, baton start WORKFLOW, baton watch ID.  Ctrl-C stops.",
            flush=True,
        )
        # A child that dies is started again (its state lives in Kafka and PostgreSQL, so a
        # new one resumes where it was); one that keeps dying stops the whole run. An API
        # that no longer answers at all is killed, and so started again.
        hang, probed = HangWatch(), 0.0
        while True:
            for line in stack.supervise():
                print(line, flush=True)
            pid = stack.pid("api") if stack.is_running("api") else None
            if pid is None or time.monotonic() - probed < PROBE_EVERY_S:
                time.sleep(0.5)
                continue
            probed = time.monotonic()
            if hang.observe(pid, _answers(f"{url}/health"), probed):
                print(
                    f"warning: api (pid {pid}) has not answered /health for {hang.hang_s:g}s; "
                    "killing it",
                    flush=True,
                )
                stack.kill("api")
            time.sleep(0.5)
    except ChildFailing as err:
        print(f"error: {err}; stopping Baton", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stack.stop_all()


# -- argument parsing --------------------------------------------------------------------


def build_parser(default_api: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description="Baton workflow orchestrator")
    parser.add_argument("--api", default=default_api, help=f"API URL (default {default_api})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run Kafka, PostgreSQL and every process; Ctrl-C stops")
    run.add_argument("--no-sample", action="store_true", help="do not start the sample")
    run.add_argument("--concurrency", type=int, default=8, help="worker concurrency")

    push = sub.add_parser("push", help="push workflow definitions (JSON or YAML)")
    push.add_argument("files", nargs="+", type=Path, metavar="FILE")
    push.add_argument("--timeout", type=float, default=PUSH_WAIT_S, help="seconds to wait")
    push.set_defaults(func=cmd_push)

    validate = sub.add_parser("validate", help="validate definitions without pushing")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(func=cmd_validate)

    start = sub.add_parser("start", help="start an instance; prints its id")
    start.add_argument("workflow")
    start.add_argument(
        "--version",
        type=_version,
        default="default",
        help="a number, latest, active, or default (active, else latest; the default)",
    )
    _add_param_option(start, "a param; VALUE is JSON if it parses, else a string")
    start.add_argument("--key", help="idempotency key: the same key starts one instance")
    start.add_argument("--watch", action="store_true", help="watch it until it ends")
    start.set_defaults(func=cmd_start)

    status = sub.add_parser("status", help="an instance's status and steps")
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="the raw instance JSON")
    status.add_argument("--wait", type=float, default=0, help="wait for it to appear (s)")
    status.set_defaults(func=cmd_status)

    events = sub.add_parser("events", help="an instance's event history")
    events.add_argument("id")
    events.add_argument("--after", type=int, default=0, help="only events after this seq")
    events.add_argument("-f", "--follow", action="store_true", help="until the instance ends")
    events.add_argument("--full", action="store_true", help="do not shorten long values")
    events.set_defaults(func=cmd_events)

    watch_ = sub.add_parser("watch", help="live view until the instance ends (exit 0 iff OK)")
    watch_.add_argument("id")
    watch_.set_defaults(func=cmd_watch)

    for action, text in (
        ("stop", "stop a running instance"),
        ("kill", "kill a running instance at once"),
        ("restart", "restart a finished instance"),
        ("pause", "pause a running instance: no new step starts"),
        ("resume", "resume a paused instance"),
        ("unblock", "let a STRICT_SEQUENTIAL queue move on past this failed run"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("id")
        if action == "restart":
            p.add_argument(
                "--mode", choices=["FROM_INCOMPLETE", "FROM_BEGINNING"], default="FROM_INCOMPLETE"
            )
            p.add_argument("--step", help="restart from this step (and what follows it)")
            _add_param_option(p, "override a param for the new run (MUTABLE ones only)")
        elif action not in ("resume", "unblock"):
            p.add_argument("--reason", default="")
        p.set_defaults(func=cmd_action, action=action)

    step = sub.add_parser(
        "step",
        help="skip, stop, restart, pause (breakpoint), resume or bypass-signals: act on one step",
    )
    step.add_argument(
        "step_action", choices=["skip", "stop", "restart", "pause", "resume", "bypass-signals"]
    )
    step.add_argument("id")
    step.add_argument("step")
    step.add_argument("--reason", default="")
    step.set_defaults(func=cmd_step_action)

    breakpoint = sub.add_parser(
        "breakpoint",
        help="set or clear a breakpoint on a step of every instance of a workflow (running or"
        " started later, loop iterations included); clear releases the steps paused there",
    )
    breakpoint.add_argument("breakpoint_action", choices=["set", "clear"])
    breakpoint.add_argument("workflow")
    breakpoint.add_argument("step", help="a step id, at any depth of loops")
    breakpoint.set_defaults(func=cmd_breakpoint)
    breakpoints = sub.add_parser("breakpoints", help="the breakpoints set on a workflow")
    breakpoints.add_argument("workflow")
    breakpoints.set_defaults(func=cmd_breakpoints)

    activate = sub.add_parser("activate", help="make a version of a workflow the active one")
    activate.add_argument("workflow")
    activate.add_argument("--version", type=int, help="default: the latest")
    activate.set_defaults(func=cmd_activation, activation="activate")
    deactivate = sub.add_parser("deactivate", help="leave a workflow without an active version")
    deactivate.add_argument("workflow")
    deactivate.set_defaults(func=cmd_activation, activation="deactivate")

    workflows = sub.add_parser("workflows", help="list workflows")
    workflows.add_argument("--limit", type=int, default=100)
    workflows.set_defaults(func=cmd_workflows)

    instances = sub.add_parser("instances", help="list instances, newest first")
    instances.add_argument("--workflow")
    instances.add_argument("--status")
    instances.add_argument(
        "--parent", help="only this instance's children (subworkflows, iterations)"
    )
    instances.add_argument("--top-level", action="store_true", help="only instances with no parent")
    instances.add_argument("--limit", type=int, default=50)
    instances.set_defaults(func=cmd_instances)

    signal_ = sub.add_parser("signal", help="send a signal (steps waiting for it start)")
    signal_.add_argument("name")
    _add_param_option(signal_, "a signal param; VALUE is a long if it parses as one, else a string")
    signal_.add_argument("--payload", help="JSON carried with the signal")
    signal_.add_argument("--request-id", help="dedup: the same request id is one signal")
    signal_.set_defaults(func=cmd_signal)

    signals = sub.add_parser("signals", help="list received signals, newest first")
    signals.add_argument("--name")
    signals.add_argument("--limit", type=int, default=50)
    signals.set_defaults(func=cmd_signals)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(api_url(settings)).parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(settings, args)
        with Client(args.api) as client:
            code: int = args.func(client, args)
            return code
    except ApiError as err:
        print_problem(err, prefix="error: ")
        return 1
    except Unreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `baton events ID | head`: stop quietly, flush nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
