"""`baton run`: Kafka, PostgreSQL and every process in the foreground, the examples pushed
and a sample started, then supervision until Ctrl-C or SIGTERM (the children themselves
are `stack.Stack`'s)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

import httpx

from services.adapters.settings import REPO_ROOT, Settings
from services.cli.client import Client
from services.cli.push import push_files, workflow_id_of
from services.cli.stack import ChildFailing, HangWatch, Stack, api_url, prepare
from services.cli.watch import watch

EXAMPLES = REPO_ROOT / "examples"
SAMPLE = "hello_diamond.yaml"
API_START_S = 60.0
PROBE_EVERY_S = 5.0  # `baton run` asks the API's /health this often (HangWatch)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The whole stack in the foreground, until Ctrl-C or SIGTERM (exit 0), or until
    preparing the infrastructure fails or a child keeps dying (exit 1). Every child is
    stopped on the way out."""
    _stop_on_signals()
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
        _start_processes(stack, args.concurrency)
        print(f"engine, worker, projector and API started; logs in {log_dir}", flush=True)
        with Client(url) as client:
            _push_examples(client, start_sample=not args.no_sample)
        _print_welcome(url, log_dir)
        _supervise(stack, url)
    except ChildFailing as err:
        print(f"error: {err}; stopping Baton", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stack.stop_all()


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT both become KeyboardInterrupt, which stops the stack."""

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop the stack even when SIGINT was inherited as ignored (a shell that
    # started us in the background, some CI runners).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _start_processes(stack: Stack, concurrency: int) -> None:
    """The four processes, returning once the API answers (or raising after API_START_S)."""
    stack.start("engine")
    stack.start("worker", "--queue", "default", "--concurrency", str(concurrency))
    stack.start("projector")
    stack.start("api")
    asyncio.run(stack.wait_api(API_START_S))


def _push_examples(client: Client, start_sample: bool) -> None:
    """Every definition in examples/; then, unless told not to, one instance of the sample
    (hello_diamond, else the first file) watched until it ends."""
    files = sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".yaml", ".yml", ".json"))
    push_files(client, files)
    if not files or not start_sample:
        return
    sample = EXAMPLES / SAMPLE if (EXAMPLES / SAMPLE).exists() else files[0]
    workflow_id = workflow_id_of(sample.read_bytes())
    accepted = client.post(f"/workflows/{workflow_id}/instances", {"initiator": "cli"})
    print(f"\nstarted {workflow_id}: {accepted['instance_id']}\n", flush=True)
    status = watch(client, accepted["instance_id"])
    print(f"\n{workflow_id} ended {status}")


def _print_welcome(url: str, log_dir: Path) -> None:
    print(
        f"\nBaton is running.\n  API      {url}/api/v1  (docs {url}/docs)\n"
        f"  registry {url}/registry\n  logs     {log_dir}\n"
        f"Try: baton push FILE, baton start WORKFLOW, baton watch ID.  Ctrl-C stops.",
        flush=True,
    )


def _supervise(stack: Stack, url: str) -> NoReturn:
    """Forever, or until `ChildFailing` or KeyboardInterrupt.

    A child that dies is started again (its state lives in Kafka and PostgreSQL, so a new
    one resumes where it was); one that keeps dying stops the whole run. An API that no
    longer answers at all is killed, and so started again."""
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


def _answers(url: str) -> bool:
    """Any HTTP answer (a 503 too: the API is alive, its dependencies are not)."""
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True
