"""The ``python`` step: a function called in a child Python process (pycall.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.child_process import ChildExit, run_process
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


class PythonRuntime:
    """``config.function`` (``module:function``) called in a child Python process.

    The child is ``sys.executable -m services.worker.pycall module:function`` in its own
    process group, its working directory ``cwd`` (the worker's own by default, so modules
    of the current project import); it reads the params as keyword arguments (a JSON object
    on stdin) and writes its result to the file named by ``BATON_RESULT``. Its environment
    is ``base_env`` as for shell steps (never the worker's whole environment), the worker's
    ``python_path`` as ``PYTHONPATH`` (where the project's modules are found when they are
    not in ``cwd`` or installed in the worker's interpreter), and the ``BATON_*`` identity
    variables; params are not environment variables here. A dict return value (None means
    ``{}``) is the outputs; an exception, an import failure or any other return value is a
    USER failure (the traceback is in the output tail); the timeout is handled as for shell
    steps.
    """

    def __init__(
        self,
        base_env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        python_path: str | None = None,
        step_user: StepUser | None = None,
    ) -> None:
        self._base_env = step_base_env(base_env, step_user)
        if python_path:
            self._base_env["PYTHONPATH"] = python_path
        self._cwd = cwd
        self._user = step_user

    async def run(self, task: Task) -> StepOutcome:
        try:
            function = json_object(task.config, "task config").get("function")
            params = json_object(task.params, "task params")
        except StepInputError as err:
            return err.outcome
        if not isinstance(function, str) or not function:
            return failure(FailureKind.PLATFORM, "task config has no function")
        workdir = new_workdir(self._user)
        try:
            result_path = Path(workdir) / "result.json"
            env = dict(self._base_env)
            env.update(baton_env(task))
            env["BATON_RESULT"] = str(result_path)
            env["PYTHONUNBUFFERED"] = "1"  # output reaches the tail even if the child is killed
            result = await run_process(
                as_user(self._user, [sys.executable, "-m", "services.worker.pycall", function]),
                env=env,
                cwd=self._cwd or os.getcwd(),
                stdin=json.dumps(params).encode(),
                timeout=step_timeout(task),
            )
            return _python_outcome(result, read_text(result_path), task)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _python_outcome(result: ChildExit, text: str | None, task: Task) -> StepOutcome:
    """pycall's result file wins over its exit status: it says what went wrong, precisely."""
    if result.timed_out:
        bad_exit = exit_failure(result, task)
        assert bad_exit is not None
        return bad_exit
    if text is not None:
        try:
            reply = json.loads(text)
        except ValueError:
            reply = None
        if isinstance(reply, dict) and isinstance(reply.get("outputs"), dict):
            return StepSuccess(reply["outputs"])
        if isinstance(reply, dict) and isinstance(reply.get("error"), str):
            return failure(FailureKind.USER, reply["error"], result.output_tail)
    bad_exit = exit_failure(result, task)
    if bad_exit is not None:
        return failure(
            FailureKind.USER,
            f"python step ended without a result: {bad_exit.message}",
            result.output_tail,
        )
    return failure(
        FailureKind.USER, "python step ended without a result (exit code 0)", result.output_tail
    )
