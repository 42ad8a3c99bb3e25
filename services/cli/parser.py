"""The argument grammar of `baton`: every command, its flags and their help, in the order
`baton --help` lists them. Each command that talks to the API names its handler as
`func`; `run` has none, `__main__.main` runs it with the settings instead of a client."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeAlias

from services.cli.commands.definitions import cmd_push, cmd_validate
from services.cli.commands.instances import (
    cmd_action,
    cmd_events,
    cmd_instances,
    cmd_start,
    cmd_status,
    cmd_step_action,
    cmd_watch,
)
from services.cli.commands.signals import cmd_signal, cmd_signals
from services.cli.commands.workflows import (
    cmd_activation,
    cmd_breakpoint,
    cmd_breakpoints,
    cmd_workflows,
)
from services.cli.push import PUSH_WAIT_S
from services.domain.kernel.documents import load_json
from services.domain.kernel.errors import DefinitionError

# What `add_subparsers` returns: argparse gives that type no public name.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

INSTANCE_ACTIONS = (
    ("stop", "stop a running instance"),
    ("kill", "kill a running instance at once"),
    ("restart", "restart a finished instance"),
    ("pause", "pause a running instance: no new step starts"),
    ("resume", "resume a paused instance"),
    ("unblock", "let a STRICT_SEQUENTIAL queue move on past this failed run"),
)
STEP_ACTIONS = ["skip", "stop", "restart", "pause", "resume", "bypass-signals"]


def parse_param(text: str) -> tuple[str, Any]:
    """`NAME=VALUE`, VALUE read as JSON with the API's bounds, else kept as a string; a
    malformed or too deep value is a usage error (exit 2), never a traceback."""
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


def parse_version(text: str) -> int | str:
    """A version number, or one of the names the API resolves: latest, active, default."""
    if text in ("latest", "active", "default"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'default', 'active' or 'latest', got {text!r}"
        ) from None


def _add_param_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "-p",
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=help_text,
    )


def build_parser(default_api: str) -> argparse.ArgumentParser:
    """The whole grammar; `default_api` is `--api`'s default (from the settings)."""
    parser = argparse.ArgumentParser(prog="baton", description="Baton workflow orchestrator")
    parser.add_argument("--api", default=default_api, help=f"API URL (default {default_api})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order of these calls is the order of the commands in `baton --help`.
    _add_run(sub)
    _add_definitions(sub)
    _add_instances(sub)
    _add_instance_actions(sub)
    _add_breakpoints(sub)
    _add_activation(sub)
    _add_lists(sub)
    _add_signals(sub)
    return parser


def _add_run(sub: Commands) -> None:
    run = sub.add_parser("run", help="run Kafka, PostgreSQL and every process; Ctrl-C stops")
    run.add_argument("--no-sample", action="store_true", help="do not start the sample")
    run.add_argument("--concurrency", type=int, default=8, help="worker concurrency")


def _add_definitions(sub: Commands) -> None:
    push = sub.add_parser("push", help="push workflow definitions (JSON or YAML)")
    push.add_argument("files", nargs="+", type=Path, metavar="FILE")
    push.add_argument("--timeout", type=float, default=PUSH_WAIT_S, help="seconds to wait")
    push.set_defaults(func=cmd_push)

    validate = sub.add_parser("validate", help="validate definitions without pushing")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(func=cmd_validate)


def _add_instances(sub: Commands) -> None:
    """start, then the three ways to read an instance: status, events, watch."""
    start = sub.add_parser("start", help="start an instance; prints its id")
    start.add_argument("workflow")
    start.add_argument(
        "--version",
        type=parse_version,
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

    watch = sub.add_parser("watch", help="live view until the instance ends (exit 0 iff OK)")
    watch.add_argument("id")
    watch.set_defaults(func=cmd_watch)


def _add_instance_actions(sub: Commands) -> None:
    """The six instance actions (one handler, `action` tells which), then `step`."""
    for action, text in INSTANCE_ACTIONS:
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
    step.add_argument("step_action", choices=STEP_ACTIONS)
    step.add_argument("id")
    step.add_argument("step")
    step.add_argument("--reason", default="")
    step.set_defaults(func=cmd_step_action)


def _add_breakpoints(sub: Commands) -> None:
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


def _add_activation(sub: Commands) -> None:
    activate = sub.add_parser("activate", help="make a version of a workflow the active one")
    activate.add_argument("workflow")
    activate.add_argument("--version", type=int, help="default: the latest")
    activate.set_defaults(func=cmd_activation, activation="activate")
    deactivate = sub.add_parser("deactivate", help="leave a workflow without an active version")
    deactivate.add_argument("workflow")
    deactivate.set_defaults(func=cmd_activation, activation="deactivate")


def _add_lists(sub: Commands) -> None:
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


def _add_signals(sub: Commands) -> None:
    signal = sub.add_parser("signal", help="send a signal (steps waiting for it start)")
    signal.add_argument("name")
    _add_param_option(signal, "a signal param; VALUE is a long if it parses as one, else a string")
    signal.add_argument("--payload", help="JSON carried with the signal")
    signal.add_argument("--request-id", help="dedup: the same request id is one signal")
    signal.set_defaults(func=cmd_signal)

    signals = sub.add_parser("signals", help="list received signals, newest first")
    signals.add_argument("--name")
    signals.add_argument("--limit", type=int, default=50)
    signals.set_defaults(func=cmd_signals)
