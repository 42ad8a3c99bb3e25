"""The ``shell`` step: a command under ``/bin/sh -c`` in a child process."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from services.domain.kernel.statuses import FailureKind
from services.domain.language.environment import reserved_env_fault
from services.domain.protocol.tasks import Task
from services.worker.runtimes.child_process import run_process
from services.worker.runtimes.child_steps import (
    StepInputError,
    as_user,
    baton_env,
    exit_failure,
    json_object,
    new_workdir,
    read_text,
    step_base_env,
    step_timeout,
)
from services.worker.runtimes.contract import StepOutcome, StepSuccess, failure
from services.worker.step_env import StepUser

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ShellRuntime:
    """``config.command`` under ``/bin/sh -c``, in a fresh temporary directory.

    Params reach the command only as environment variables, never interpolated into the
    command text: each param by its name (strings as-is, other values as JSON), plus
    ``BATON_INSTANCE_ID``, ``BATON_WORKFLOW_ID``, ``BATON_STEP_ID``, ``BATON_ATTEMPT``,
    ``BATON_RUN`` and ``BATON_OUTPUTS``, a file path: a JSON object the command writes there
    becomes the step's outputs. The rest of the environment is ``base_env``: the worker's
    variables its allow-list names (step_env.py), never the worker's whole environment.

    A param may not replace any of that: a name a step reads from its environment
    (services.domain.language.environment: ``PATH``, ``LD_PRELOAD``, ``BATON_*`` …) or one of
    ``base_env`` is a USER failure, and the command does not run.

    Exit code 0 succeeds; a non-zero exit or death by a signal is a USER failure; the step's
    timeout kills its whole process group and is a TIMEOUT failure.
    """

    def __init__(
        self, base_env: Mapping[str, str] | None = None, step_user: StepUser | None = None
    ) -> None:
        self._base_env = step_base_env(base_env, step_user)
        self._user = step_user

    async def run(self, task: Task) -> StepOutcome:
        try:
            command = self._command(task)
            env = self._env(task)
        except StepInputError as err:
            return err.outcome
        workdir = new_workdir(self._user)
        try:
            outputs_path = Path(workdir) / ".baton-outputs.json"
            env["BATON_OUTPUTS"] = str(outputs_path)
            result = await run_process(
                as_user(self._user, ["/bin/sh", "-c", command]),
                env=env,
                cwd=workdir,
                stdin=None,
                timeout=step_timeout(task),
            )
            bad_exit = exit_failure(result, task)
            if bad_exit is not None:
                return bad_exit
            return _shell_outputs(read_text(outputs_path), result.output_tail)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _command(task: Task) -> str:
        command = json_object(task.config, "task config").get("command")
        if not isinstance(command, str) or not command:
            raise StepInputError(failure(FailureKind.PLATFORM, "task config has no command"))
        return command

    def _env(self, task: Task) -> dict[str, str]:
        params = json_object(task.params, "task params")
        bad = sorted(name for name in params if not _ENV_NAME.match(name))
        if bad:
            names = ", ".join(repr(n) for n in bad)
            raise StepInputError(
                failure(
                    FailureKind.USER,
                    f"param names are not valid environment variable names: {names}",
                )
            )
        taken = [fault for name in params if (fault := self._taken(name))]
        if taken:
            raise StepInputError(failure(FailureKind.USER, "; ".join(taken)))
        env = dict(self._base_env)
        for name, value in params.items():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            if "\0" in text:
                raise StepInputError(
                    failure(FailureKind.USER, f"param {name!r} contains a NUL character")
                )
            env[name] = text
        env.update(baton_env(task))
        return env

    def _taken(self, name: str) -> str | None:
        """Why a param may not be named so, or None."""
        fault = reserved_env_fault(name)
        if fault is None and name in self._base_env:
            fault = f"{name!r} is a variable of this worker's step environment; a param may not replace it"
        return fault


def _shell_outputs(text: str | None, output_tail: str) -> StepOutcome:
    if text is None or not text.strip():
        return StepSuccess()
    try:
        value = json.loads(text)
    except ValueError as err:
        return failure(
            FailureKind.USER, f"$BATON_OUTPUTS does not hold valid JSON: {err}", output_tail
        )
    if not isinstance(value, dict):
        return failure(
            FailureKind.USER,
            f"$BATON_OUTPUTS must hold a JSON object, got {_json_kind(value)}",
            output_tail,
        )
    return StepSuccess(value)


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")
