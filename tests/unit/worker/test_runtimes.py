"""Step runtimes run real processes: shell commands, python functions, process-group kills."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from services.adapters.settings import REPO_ROOT
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.child_process import OUTPUT_TAIL_CHARS
from services.worker.runtimes.contract import (
    MESSAGE_CHARS,
    StepFailure,
    StepOutcome,
    StepSuccess,
    failure,
)
from services.worker.runtimes.python import PythonRuntime
from services.worker.runtimes.registry import NoopRuntime, default_runtimes, runtime_for
from services.worker.runtimes.shell import ShellRuntime
from tests.helpers import wait_until


def make_task(
    step_type: str,
    config: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Task:
    return Task(
        instance_id="inst-1",
        workflow_id="wf-1",
        step_id="step-a",
        attempt=2,
        run=1,
        step_type=step_type,
        queue="default",
        config=json.dumps(config or {}),
        params=json.dumps(params or {}),
        timeout_seconds=timeout,
        created_at=0,
    )


def shell(command: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Task:
    return make_task("shell", {"command": command}, params, timeout)


def python(
    function: str, params: dict[str, Any] | None = None, timeout: float | None = None
) -> Task:
    return make_task("python", {"function": function}, params, timeout)


def succeeded(outcome: StepOutcome) -> dict[str, Any]:
    assert isinstance(outcome, StepSuccess), outcome
    return dict(outcome.outputs)


def failed(outcome: StepOutcome, kind: FailureKind) -> StepFailure:
    assert isinstance(outcome, StepFailure), outcome
    assert outcome.kind is kind, outcome
    return outcome


def exists(path: str) -> bool:
    return Path(path).exists()


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie left (it no longer runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


# -- noop and unknown types -------------------------------------------------------------------


async def test_noop_succeeds_with_no_outputs() -> None:
    assert succeeded(await NoopRuntime().run(make_task("noop"))) == {}


async def test_unknown_step_type_is_a_platform_failure() -> None:
    runtime = runtime_for(default_runtimes(), "teleport")
    outcome = failed(await runtime.run(make_task("teleport")), FailureKind.PLATFORM)
    assert outcome.message == "no runtime for step type teleport"


def test_failure_bounds_message_and_tail() -> None:
    f = failure(FailureKind.USER, "m" * 5000, "t" * 10_000 + "END")
    assert len(f.message) == MESSAGE_CHARS
    assert len(f.output_tail) == OUTPUT_TAIL_CHARS
    assert f.output_tail.endswith("END")


# -- shell ------------------------------------------------------------------------------------


async def test_shell_outputs_come_from_baton_outputs_file() -> None:
    command = (
        'printf \'{"instance": "%s", "step": "%s", "attempt": %s, "run": %s, "workflow": "%s"}\' '
        '"$BATON_INSTANCE_ID" "$BATON_STEP_ID" "$BATON_ATTEMPT" "$BATON_RUN" "$BATON_WORKFLOW_ID" '
        '> "$BATON_OUTPUTS"'
    )
    outputs = succeeded(await ShellRuntime().run(shell(command)))
    assert outputs == {
        "instance": "inst-1",
        "step": "step-a",
        "attempt": 2,
        "run": 1,
        "workflow": "wf-1",
    }


async def test_shell_without_outputs_file_succeeds_with_empty_outputs() -> None:
    assert succeeded(await ShellRuntime().run(shell("echo hello"))) == {}


async def test_shell_runs_in_a_fresh_temporary_directory() -> None:
    command = 'printf \'{"cwd": "%s", "files": "%s"}\' "$PWD" "$(ls -A)" > "$BATON_OUTPUTS"'
    outputs = succeeded(await ShellRuntime().run(shell(command)))
    assert Path(outputs["cwd"]).name.startswith("baton-step-")
    assert outputs["files"] == ""
    assert not exists(outputs["cwd"])  # removed after the step


async def test_shell_params_are_environment_variables_never_interpolated(tmp_path: Path) -> None:
    victim = tmp_path / "x"
    victim.mkdir()
    evil = f"$(rm -rf {victim}); echo"
    out = tmp_path / "out"
    params = {
        "EVIL": evil,
        "COUNT": 3,
        "FLAGS": {"a": [1, True, None]},
        "OUT": str(out),
    }
    command = 'printf "%s\\n%s\\n%s" "$EVIL" "$COUNT" "$FLAGS" > "$OUT"; echo $EVIL'
    outcome = await ShellRuntime().run(shell(command, params))
    assert succeeded(outcome) == {}
    assert out.read_text().split("\n") == [evil, "3", '{"a":[1,true,null]}']
    assert victim.is_dir(), "the param's value was executed by the shell"


async def test_shell_params_cannot_override_baton_variables(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    outcome = await ShellRuntime().run(
        shell(f"touch {ran}", {"BATON_INSTANCE_ID": "forged", "BATON_OUTPUTS": "/etc/x"})
    )
    f = failed(outcome, FailureKind.USER)
    assert "'BATON_INSTANCE_ID' is reserved" in f.message
    assert "'BATON_OUTPUTS' is reserved" in f.message
    assert not ran.exists()


@pytest.mark.parametrize(
    "params",
    [
        {"PATH": "{dir}"},
        {"LD_PRELOAD": "{dir}/evil.so"},
        {"BASH_ENV": "{dir}/evil.sh", "ENV": "{dir}/evil.sh"},
        {"GIT_SSH_COMMAND": "sh -c id"},
    ],
)
async def test_a_param_that_would_decide_what_the_shell_runs_fails_without_running(
    tmp_path: Path, params: dict[str, str]
) -> None:
    """Defence in depth: the API and the engine refuse such names, and so does the worker
    (a definition stored before that rule, a task written by hand)."""
    fake_ls = tmp_path / "ls"
    fake_ls.write_text(f"#!/bin/sh\ntouch {tmp_path}/hijacked\n")
    fake_ls.chmod(0o755)
    given = {k: v.format(dir=tmp_path) for k, v in params.items()}
    outcome = await ShellRuntime().run(shell("ls > /dev/null", given))
    f = failed(outcome, FailureKind.USER)
    for name in params:
        assert f"{name!r} is reserved" in f.message
    assert not (tmp_path / "hijacked").exists()


async def test_a_param_cannot_replace_a_variable_of_the_step_environment() -> None:
    runtime = ShellRuntime({"PATH": "/usr/bin:/bin", "AWS_REGION": "eu-west-1"})
    f = failed(await runtime.run(shell("true", {"AWS_REGION": "us-east-1"})), FailureKind.USER)
    assert "'AWS_REGION'" in f.message and "step environment" in f.message


async def test_a_shell_step_sees_none_of_the_workers_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_SQL_CONNECTIONS", '{"wh": "postgresql://u:dsn-s3cret@db/wh"}')
    monkeypatch.setenv("SOME_API_TOKEN", "token-s3cret")
    monkeypatch.setenv("LC_TIME", "C")
    f = failed(await ShellRuntime().run(shell("env; exit 1", {"day": "mon"})), FailureKind.USER)
    assert "s3cret" not in f.output_tail
    assert "BATON_SQL_CONNECTIONS" not in f.output_tail
    names = {line.split("=", 1)[0] for line in f.output_tail.splitlines() if "=" in line}
    assert {"PATH", "LC_TIME", "day", "BATON_INSTANCE_ID", "BATON_OUTPUTS"} <= names
    assert "SOME_API_TOKEN" not in names


async def test_a_shell_step_gets_exactly_the_environment_it_is_given() -> None:
    runtime = ShellRuntime({"PATH": "/usr/bin:/bin", "SPECIAL": "yes"})
    command = 'printf \'{"special": "%s"}\' "$SPECIAL" > "$BATON_OUTPUTS"'
    assert succeeded(await runtime.run(shell(command))) == {"special": "yes"}


async def test_shell_param_names_must_be_environment_variable_names() -> None:
    outcome = await ShellRuntime().run(shell("true", {"ok_name": 1, "bad-name": 2, "1st": 3}))
    f = failed(outcome, FailureKind.USER)
    assert "'1st'" in f.message
    assert "'bad-name'" in f.message
    assert "ok_name" not in f.message


async def test_shell_nonzero_exit_is_a_user_failure_with_output_tail() -> None:
    outcome = await ShellRuntime().run(shell("echo to-stdout; echo to-stderr >&2; exit 3"))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "exit code 3"
    assert "to-stdout" in f.output_tail
    assert "to-stderr" in f.output_tail


async def test_shell_output_tail_keeps_only_the_last_characters() -> None:
    command = "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; exit 1"
    f = failed(await ShellRuntime().run(shell(command)), FailureKind.USER)
    assert len(f.output_tail) <= OUTPUT_TAIL_CHARS
    assert f.output_tail.endswith("line-1999\n")
    assert "line-0\n" not in f.output_tail


async def test_shell_killed_by_a_signal_names_it() -> None:
    f = failed(await ShellRuntime().run(shell("kill -TERM $$")), FailureKind.USER)
    assert f.message == "killed by SIGTERM"


async def test_shell_invalid_outputs_json_is_a_user_failure() -> None:
    outcome = await ShellRuntime().run(shell("echo '{not json' > \"$BATON_OUTPUTS\""))
    f = failed(outcome, FailureKind.USER)
    assert f.message.startswith("$BATON_OUTPUTS does not hold valid JSON")


async def test_shell_outputs_must_be_an_object() -> None:
    outcome = await ShellRuntime().run(shell("echo '[1, 2]' > \"$BATON_OUTPUTS\""))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "$BATON_OUTPUTS must hold a JSON object, got an array"


async def test_shell_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    command = 'sleep 30 & echo $! > "$PIDFILE"; echo started; wait'
    outcome = await ShellRuntime().run(shell(command, {"PIDFILE": str(pidfile)}, timeout=0.5))
    f = failed(outcome, FailureKind.TIMEOUT)
    assert f.message == "step timed out after 0.5s"
    assert "started" in f.output_tail
    grandchild = int(pidfile.read_text())
    wait_until(lambda: process_gone(grandchild), timeout=5, message="the shell's `sleep 30`")


async def test_shell_processes_left_in_the_background_end_with_the_step(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    command = 'sleep 30 > /dev/null 2>&1 & echo $! > "$PIDFILE"'
    assert succeeded(await ShellRuntime().run(shell(command, {"PIDFILE": str(pidfile)}))) == {}
    grandchild = int(pidfile.read_text())
    wait_until(lambda: process_gone(grandchild), timeout=5, message="the background `sleep 30`")


async def test_shell_task_without_command_is_a_platform_failure() -> None:
    outcome = await ShellRuntime().run(make_task("shell", {}))
    assert failed(outcome, FailureKind.PLATFORM).message == "task config has no command"


# -- python -----------------------------------------------------------------------------------


@pytest.fixture
def py() -> PythonRuntime:
    return PythonRuntime(cwd=str(REPO_ROOT))


async def test_python_return_value_is_the_outputs(py: PythonRuntime) -> None:
    assert succeeded(await py.run(python("examples.steps:add", {"a": 2, "b": 3}))) == {"sum": 5}


async def test_python_none_return_is_empty_outputs(py: PythonRuntime) -> None:
    assert succeeded(await py.run(python(f"{__name__}:returns_none"))) == {}


async def test_python_sees_baton_identity_in_its_environment(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:flaky", {"fail_times": 1}))
    assert succeeded(outcome) == {"attempt": 2}  # make_task runs attempt 2


async def test_a_python_step_sees_none_of_the_workers_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_SQL_CONNECTIONS", '{"wh": "postgresql://u:dsn-s3cret@db/wh"}')
    monkeypatch.setenv("SOME_API_TOKEN", "token-s3cret")
    runtime = PythonRuntime(cwd=str(REPO_ROOT))
    environ = succeeded(await runtime.run(python(f"{__name__}:environment")))
    assert "s3cret" not in json.dumps(environ)
    assert "BATON_SQL_CONNECTIONS" not in environ and "SOME_API_TOKEN" not in environ
    assert {"PATH", "BATON_INSTANCE_ID", "BATON_RESULT"} <= set(environ)


async def test_a_python_step_keeps_the_workers_pythonpath_to_import_its_modules(
    tmp_path: Path,
) -> None:
    (tmp_path / "elsewhere_steps.py").write_text("def f():\n    return {'ok': True}\n")
    runtime = PythonRuntime(
        {"PATH": "/usr/bin:/bin"}, cwd=str(REPO_ROOT), python_path=str(tmp_path)
    )
    assert succeeded(await runtime.run(python("elsewhere_steps:f"))) == {"ok": True}


async def test_python_exception_is_a_user_failure_with_traceback(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:fail", {"message": "boom"}))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "ValueError: boom"
    assert "Traceback (most recent call last)" in f.output_tail
    assert "examples/steps.py" in f.output_tail


async def test_python_missing_argument_is_a_user_failure_naming_it(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:add", {"a": 1, "c": 2}))
    f = failed(outcome, FailureKind.USER)
    assert f.message.startswith("TypeError: ")
    assert "'b'" in f.message


async def test_python_gets_only_the_params_its_signature_takes(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:add", {"a": 1, "b": 2, "unrelated": "x"}))
    assert succeeded(outcome) == {"sum": 3}


async def test_python_missing_module_is_a_user_failure(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.no_such_module:add"))
    f = failed(outcome, FailureKind.USER)
    assert f.message.startswith("cannot import module 'examples.no_such_module': ModuleNotFound")


async def test_python_missing_function_is_a_user_failure(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:no_such_function"))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "module 'examples.steps' has no function 'no_such_function'"


async def test_python_return_value_must_be_a_json_object(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:not_an_object"))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "function must return a dict (a JSON object) or None, got list"


async def test_python_return_value_must_be_json_serialisable(py: PythonRuntime) -> None:
    outcome = await py.run(python(f"{__name__}:returns_a_set"))
    f = failed(outcome, FailureKind.USER)
    assert f.message.startswith("return value is not a JSON object: ")


async def test_python_print_output_reaches_the_tail(py: PythonRuntime) -> None:
    outcome = await py.run(python(f"{__name__}:prints_then_fails"))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "RuntimeError: after printing"
    assert "printed by the step" in f.output_tail


async def test_python_async_function_is_awaited(py: PythonRuntime) -> None:
    assert succeeded(await py.run(python(f"{__name__}:async_step", {"x": 4}))) == {"double": 8}


async def test_python_timeout_kills_the_child(py: PythonRuntime) -> None:
    outcome = await py.run(python("examples.steps:slow", {"seconds": 30}, timeout=1))
    assert failed(outcome, FailureKind.TIMEOUT).message == "step timed out after 1s"


# Step functions the python tests run in a child process (importing this module there).


def returns_none() -> None:
    return None


def returns_a_set() -> dict[str, Any]:
    return {"values": {1, 2}}


def prints_then_fails() -> None:
    print("printed by the step")
    raise RuntimeError("after printing")


async def async_step(x: int) -> dict[str, Any]:
    return {"double": 2 * x}


def environment() -> dict[str, Any]:
    return dict(os.environ)
