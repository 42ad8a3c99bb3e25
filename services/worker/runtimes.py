"""Step runtimes: how a worker runs one task of each step type, and what it reports.

A runtime turns a ``Task`` into an outcome (``StepSuccess`` or ``StepFailure``); it never talks
to Kafka. Failures say who failed: the step's own code (USER), Baton (PLATFORM), or the clock
(TIMEOUT). Steps that run code run it in a child process in its own process group, so a
timeout or a worker shutdown can end the step and everything it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from services.domain.kernel.documents import unstorable_path
from services.domain.kernel.statuses import FailureKind
from services.domain.language.environment import reserved_env_fault
from services.domain.protocol.tasks import Task
from services.worker.child_process import OUTPUT_TAIL_CHARS as OUTPUT_TAIL_CHARS
from services.worker.child_process import ChildExit, run_process
from services.worker.step_env import EnvAllowList, StepUser

MESSAGE_CHARS = 2_000

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class StepSuccess:
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepFailure:
    kind: FailureKind
    message: str
    output_tail: str = ""


StepOutcome = StepSuccess | StepFailure


class StepRuntime(Protocol):
    """Runs one task of a step type and returns its outcome.

    Delivery contract: **at-least-once**. The same task (same instance, step and attempt) may
    be run more than once — most often when a worker crashes or is killed after starting it
    and before its offset was committed, so the task is redelivered to another worker. The
    engine treats reports as idempotent by (instance, step, attempt): a duplicate or late
    report changes nothing. Runtimes, and the steps they run, must therefore be idempotent or
    tolerate being re-run.

    ``run`` returns an outcome for every failure of the step itself (it raises only for bugs
    in Baton, which the worker reports as PLATFORM failures). If cancelled (worker shutdown
    past its grace period) it must stop the step's processes before re-raising; the attempt
    is then not reported and the engine's heartbeat expiry retries it.
    """

    async def run(self, task: Task) -> StepOutcome: ...


def failure(kind: FailureKind, message: str, output_tail: str = "") -> StepFailure:
    """A failure with its message and output tail bounded to what a report may carry, and
    storable: PostgreSQL's text cannot hold a NUL character (a step printed one, an http
    body or an error held one), so each becomes U+FFFD, the replacement character, as the
    UTF-8 decoding of the output already marks what it cannot read."""
    message, output_tail = (t.replace("\x00", "\ufffd") for t in (message, output_tail))
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return StepFailure(kind, message, output_tail[-OUTPUT_TAIL_CHARS:])


def reportable(outcome: StepOutcome) -> StepOutcome:
    """The outcome as the worker may report it, whatever the runtime: outputs holding a NUL
    character or a lone surrogate in any string or key (a shell step's `$BATON_OUTPUTS`, a python step's return
    value, an http response body, a sql row) are a USER failure naming the path — they are
    the step's data, and no event may carry what the read models cannot hold; a failure is
    bounded and made storable by `failure`."""
    if isinstance(outcome, StepFailure):
        return failure(outcome.kind, outcome.message, outcome.output_tail)
    found = unstorable_path(dict(outcome.outputs), ("outputs",))
    if found is not None:
        return failure(FailureKind.USER, f"{found[0]}: {found[1]}")
    return outcome


class NoopRuntime:
    """Succeeds at once with no outputs: no process, no thread (the benchmark's hot path)."""

    async def run(self, task: Task) -> StepOutcome:
        return _EMPTY_SUCCESS


_EMPTY_SUCCESS = StepSuccess()


@dataclass(frozen=True, slots=True)
class MissingRuntime:
    """Stands in for a step type this worker cannot run: the platform's fault, not the step's."""

    step_type: str

    async def run(self, task: Task) -> StepOutcome:
        return failure(FailureKind.PLATFORM, f"no runtime for step type {self.step_type}")


def runtime_for(registry: Mapping[str, StepRuntime], step_type: str) -> StepRuntime:
    runtime = registry.get(step_type)
    return runtime if runtime is not None else MissingRuntime(step_type)


# ---------------------------------------------------------------------------------------------
# Steps that run code in a child process (child_process.py)
# ---------------------------------------------------------------------------------------------


class _StepInputError(Exception):
    """The task cannot be run as given; carries the failure to report."""

    def __init__(self, outcome: StepFailure) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_failure(result: ChildExit, task: Task) -> StepFailure | None:
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


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise _StepInputError(failure(FailureKind.PLATFORM, f"{what} is not JSON: {err}")) from err
    if not isinstance(value, dict):
        raise _StepInputError(
            failure(FailureKind.PLATFORM, f"{what} is not a JSON object: {type(value).__name__}")
        )
    return value


def _baton_env(task: Task) -> dict[str, str]:
    return {
        "BATON_INSTANCE_ID": task.instance_id,
        "BATON_WORKFLOW_ID": task.workflow_id,
        "BATON_STEP_ID": task.step_id,
        "BATON_ATTEMPT": str(task.attempt),
        "BATON_RUN": str(task.run),
    }


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _timeout(task: Task) -> float | None:
    t = task.timeout_seconds
    return t if t is not None and t > 0 else None


def _step_base_env(
    base_env: Mapping[str, str] | None, step_user: StepUser | None
) -> dict[str, str]:
    """The variables of the worker a step starts with: ``base_env`` (the composition root's
    allow-listed selection), else the default allow-list over this process's environment —
    never the whole of it, which holds the worker's secrets — with the step user's identity
    (HOME, USER, LOGNAME) when steps run as another user."""
    env = dict(base_env) if base_env is not None else EnvAllowList.parse(None).select(os.environ)
    return step_user.environment(env) if step_user is not None else env


def _workdir(step_user: StepUser | None) -> str:
    """A fresh private directory for one step (mode 0700), its user's."""
    workdir = tempfile.mkdtemp(prefix="baton-step-")
    if step_user is not None:
        step_user.give(workdir)
    return workdir


def _as_user(step_user: StepUser | None, argv: list[str]) -> list[str]:
    return step_user.command(argv) if step_user is not None else argv


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
        self._base_env = _step_base_env(base_env, step_user)
        self._user = step_user

    async def run(self, task: Task) -> StepOutcome:
        try:
            command = self._command(task)
            env = self._env(task)
        except _StepInputError as err:
            return err.outcome
        workdir = _workdir(self._user)
        try:
            outputs_path = Path(workdir) / ".baton-outputs.json"
            env["BATON_OUTPUTS"] = str(outputs_path)
            result = await run_process(
                _as_user(self._user, ["/bin/sh", "-c", command]),
                env=env,
                cwd=workdir,
                stdin=None,
                timeout=_timeout(task),
            )
            bad_exit = _exit_failure(result, task)
            if bad_exit is not None:
                return bad_exit
            return _shell_outputs(_read_text(outputs_path), result.output_tail)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _command(task: Task) -> str:
        command = _json_object(task.config, "task config").get("command")
        if not isinstance(command, str) or not command:
            raise _StepInputError(failure(FailureKind.PLATFORM, "task config has no command"))
        return command

    def _env(self, task: Task) -> dict[str, str]:
        params = _json_object(task.params, "task params")
        bad = sorted(name for name in params if not _ENV_NAME.match(name))
        if bad:
            names = ", ".join(repr(n) for n in bad)
            raise _StepInputError(
                failure(
                    FailureKind.USER,
                    f"param names are not valid environment variable names: {names}",
                )
            )
        taken = [fault for name in params if (fault := self._taken(name))]
        if taken:
            raise _StepInputError(failure(FailureKind.USER, "; ".join(taken)))
        env = dict(self._base_env)
        for name, value in params.items():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            if "\0" in text:
                raise _StepInputError(
                    failure(FailureKind.USER, f"param {name!r} contains a NUL character")
                )
            env[name] = text
        env.update(_baton_env(task))
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
        self._base_env = _step_base_env(base_env, step_user)
        if python_path:
            self._base_env["PYTHONPATH"] = python_path
        self._cwd = cwd
        self._user = step_user

    async def run(self, task: Task) -> StepOutcome:
        try:
            function = _json_object(task.config, "task config").get("function")
            params = _json_object(task.params, "task params")
        except _StepInputError as err:
            return err.outcome
        if not isinstance(function, str) or not function:
            return failure(FailureKind.PLATFORM, "task config has no function")
        workdir = _workdir(self._user)
        try:
            result_path = Path(workdir) / "result.json"
            env = dict(self._base_env)
            env.update(_baton_env(task))
            env["BATON_RESULT"] = str(result_path)
            env["PYTHONUNBUFFERED"] = "1"  # output reaches the tail even if the child is killed
            result = await run_process(
                _as_user(self._user, [sys.executable, "-m", "services.worker.pycall", function]),
                env=env,
                cwd=self._cwd or os.getcwd(),
                stdin=json.dumps(params).encode(),
                timeout=_timeout(task),
            )
            return _python_outcome(result, _read_text(result_path), task)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _python_outcome(result: ChildExit, text: str | None, task: Task) -> StepOutcome:
    """pycall's result file wins over its exit status: it says what went wrong, precisely."""
    if result.timed_out:
        bad_exit = _exit_failure(result, task)
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
    bad_exit = _exit_failure(result, task)
    if bad_exit is not None:
        return failure(
            FailureKind.USER,
            f"python step ended without a result: {bad_exit.message}",
            result.output_tail,
        )
    return failure(
        FailureKind.USER, "python step ended without a result (exit code 0)", result.output_tail
    )


def default_runtimes(
    base_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    http_allowed_hosts: str | None = None,
    sql_connections: str | None = None,
    python_path: str | None = None,
    sql_allow_superuser: str | None = None,
    step_user: StepUser | None = None,
) -> dict[str, StepRuntime]:
    """The registry: step type -> runtime. ``sleep`` steps never reach a worker. ``base_env``
    is the step environment (the worker's allow-listed variables, step_env.py), ``step_user``
    the OS user shell and python steps run as (None: the worker's own); the http and
    sql settings are the values of BATON_HTTP_ALLOWED_HOSTS, BATON_SQL_CONNECTIONS and
    BATON_SQL_ALLOW_SUPERUSER."""
    # Imported here: they need httpx and asyncpg, which the other runtimes do not.
    from services.worker.http_runtime import HostAllowList, HttpRuntime
    from services.worker.sql_roles import allowed_superusers
    from services.worker.sql_runtime import SqlRuntime, connections_from_env

    return {
        "noop": NoopRuntime(),
        "shell": ShellRuntime(base_env, step_user),
        "python": PythonRuntime(base_env, cwd, python_path, step_user),
        "http": HttpRuntime(HostAllowList.from_env(http_allowed_hosts)),
        "sql": SqlRuntime(
            connections_from_env(sql_connections), allowed_superusers(sql_allow_superuser)
        ),
    }
