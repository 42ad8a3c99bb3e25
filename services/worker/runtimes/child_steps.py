"""What the steps that run code in a child process (shell, python) share: reading the task,
the environment and private directory a step starts with, and what an exit status means.

The child process itself (its process group, its timeout, its output tail) is
child_process.py's.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.child_process import ChildExit
from services.worker.runtimes.contract import StepFailure, failure
from services.worker.step_env import EnvAllowList, StepUser


class StepInputError(Exception):
    """The task cannot be run as given; carries the failure to report."""

    def __init__(self, outcome: StepFailure) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_failure(result: ChildExit, task: Task) -> StepFailure | None:
    """The failure an exit status means (None for exit code 0)."""
    if result.timed_out:
        return failure(
            FailureKind.TIMEOUT,
            f"step timed out after {task.timeout_seconds:g}s",
            result.output_tail,
        )
    if result.returncode < 0:
        return failure(
            FailureKind.USER,
            f"killed by {_signal_name(-result.returncode)}",
            result.output_tail,
        )
    if result.returncode != 0:
        return failure(FailureKind.USER, f"exit code {result.returncode}", result.output_tail)
    return None


def json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` as a JSON object; StepInputError (a PLATFORM failure) for anything else: the
    engine wrote it, so a bad one is Baton's fault."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise StepInputError(failure(FailureKind.PLATFORM, f"{what} is not JSON: {err}")) from err
    if not isinstance(value, dict):
        raise StepInputError(
            failure(FailureKind.PLATFORM, f"{what} is not a JSON object: {type(value).__name__}")
        )
    return value


def baton_env(task: Task) -> dict[str, str]:
    """The ``BATON_*`` identity variables of the attempt."""
    return {
        "BATON_INSTANCE_ID": task.instance_id,
        "BATON_WORKFLOW_ID": task.workflow_id,
        "BATON_STEP_ID": task.step_id,
        "BATON_ATTEMPT": str(task.attempt),
        "BATON_RUN": str(task.run),
    }


def read_text(path: Path) -> str | None:
    """The file's text, or None when the step did not write it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def step_timeout(task: Task) -> float | None:
    """The step's timeout in seconds, or None for none."""
    t = task.timeout_seconds
    return t if t is not None and t > 0 else None


def step_base_env(base_env: Mapping[str, str] | None, step_user: StepUser | None) -> dict[str, str]:
    """The variables of the worker a step starts with: ``base_env`` (the composition root's
    allow-listed selection), else the default allow-list over this process's environment —
    never the whole of it, which holds the worker's secrets — with the step user's identity
    (HOME, USER, LOGNAME) when steps run as another user."""
    env = dict(base_env) if base_env is not None else EnvAllowList.parse(None).select(os.environ)
    return step_user.environment(env) if step_user is not None else env


def new_workdir(step_user: StepUser | None) -> str:
    """A fresh private directory for one step (mode 0700), its user's. The caller removes it."""
    workdir = tempfile.mkdtemp(prefix="baton-step-")
    if step_user is not None:
        step_user.give(workdir)
    return workdir


def as_user(step_user: StepUser | None, argv: list[str]) -> list[str]:
    """``argv`` run as the step user (unchanged when steps run as the worker's own user)."""
    return step_user.command(argv) if step_user is not None else argv
