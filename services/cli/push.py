"""Pushing definition files (`baton push`, and `baton run` for examples/): each is sent as
it is (JSON or YAML), then read back until its new version is visible."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from services.cli.client import ApiError, Client, print_problem
from services.domain.kernel.documents import load_text

PUSH_WAIT_S = 30.0


def media_type(path: Path) -> str:
    return "application/json" if path.suffix.lower() == ".json" else "application/yaml"


def _latest_version(client: Client, workflow_id: str) -> int:
    try:
        return int(client.get(f"/workflows/{workflow_id}")["latest_version"])
    except ApiError as err:
        if err.status == 404:
            return 0
        raise


def workflow_id_of(text: bytes) -> str | None:
    """The definition's id, read before pushing (the API does the validation); None when it
    cannot be read. With the API's bounds: a deep document is no RecursionError here."""
    try:
        data = load_text(text)
    except ValueError:  # not JSON or YAML, or out of bounds (a DefinitionError)
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def push_files(client: Client, files: Sequence[Path], timeout: float = PUSH_WAIT_S) -> int:
    """Push each file and wait until its new version is readable; the number that failed."""
    failed = 0
    for path in files:
        try:
            text = path.read_bytes()
        except OSError as err:
            print(f"{path}: {err}", file=sys.stderr)
            failed += 1
            continue
        workflow_id = workflow_id_of(text)
        before = _latest_version(client, workflow_id) if workflow_id else 0
        try:
            accepted = client.post(
                "/workflows", content=text, headers={"content-type": media_type(path)}
            )
        except ApiError as err:
            print_problem(err, prefix=f"{path}: ")
            failed += 1
            continue
        workflow_id = accepted["workflow_id"]
        deadline = time.monotonic() + timeout
        version = _latest_version(client, workflow_id)
        while version <= before and time.monotonic() < deadline:
            time.sleep(0.1)
            version = _latest_version(client, workflow_id)
        if version <= before:
            print(
                f"{path}: accepted (command {accepted['command_id']}) but no new version of "
                f"{workflow_id} appeared within {timeout:g}s; are the engine and projector up?",
                file=sys.stderr,
            )
            failed += 1
        else:
            print(f"{path}: {workflow_id} version {version}")
    return failed
