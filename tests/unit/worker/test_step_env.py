"""The worker's step environment: only the variables an allow-list names reach a step."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from services.adapters.settings import REPO_ROOT
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepSuccess
from services.worker.runtimes.python import PythonRuntime
from services.worker.step_env import DEFAULT_ALLOW, EnvAllowList, StepUser
from tests.unit.worker import step_user_worker

WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/worker",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "BATON_SQL_CONNECTIONS": '{"wh": "postgresql://reader:s3cret@db/wh"}',
    "AWS_SECRET_ACCESS_KEY": "abc",
    "DATABASE_URL": "postgresql://postgres:pw@db/baton",
    "PYTHONPATH": "/srv/app",
    "LD_PRELOAD": "/tmp/x.so",
}


def test_the_default_passes_the_safe_set_and_no_secret() -> None:
    env = EnvAllowList.parse(None).select(WORKER_ENV)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    assert EnvAllowList.parse("") == EnvAllowList.parse(DEFAULT_ALLOW)


def test_names_and_prefix_patterns_replace_the_default() -> None:
    allow = EnvAllowList.parse(" PATH , AWS_* ,")
    assert allow.select(WORKER_ENV) == {"PATH": "/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": "abc"}
    assert not allow.allows("HOME")


@pytest.mark.parametrize("entry", ["*", "A-B", "1X", "PA*TH", "$PATH"])
def test_an_entry_that_is_no_name_or_pattern_is_refused_naming_it(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a variable name nor NAME"):
        EnvAllowList.parse(f"PATH,{entry}")


@pytest.mark.parametrize("entry", ["BATON_SQL_CONNECTIONS", "BATON_*", "BAT*", "B*"])
def test_the_workers_own_settings_can_never_be_allowed(entry: str) -> None:
    with pytest.raises(ValueError, match="BATON_"):
        EnvAllowList.parse(entry)


def test_a_name_that_merely_starts_like_baton_is_a_name() -> None:
    assert EnvAllowList.parse("B,BAT").select({"B": "1", "BAT": "2", "BATON_X": "3"}) == {
        "B": "1",
        "BAT": "2",
    }


# -- steps as another OS user ---------------------------------------------------------------


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not _has_user("nobody"),
    reason="needs a root worker, util-linux's setpriv and the user nobody",
)


def _run_worker(user: str, *flags: str, worker_as: str | None = None) -> dict[str, str]:
    secret = json.dumps({"wh": f"postgresql://u:{step_user_worker.SECRET}@db/wh"})
    argv = [sys.executable, "-m", "tests.unit.worker.step_user_worker", user, *flags]
    if worker_as is not None:
        worker_user = StepUser.parse(worker_as)
        assert worker_user is not None
        argv = worker_user.command(argv)
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, "BATON_SQL_CONNECTIONS": secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


@needs_root
def test_a_worker_hides_its_process_from_the_steps_of_its_own_user() -> None:
    """A worker that is not root, and its steps as itself: without the hiding, a step reads
    the worker's secrets from /proc/<worker pid>/environ; with it, it cannot."""
    nobody = pwd.getpwnam("nobody")
    assert _run_worker("self", worker_as="nobody")["leaks"] == "1"
    hidden = _run_worker("self", "--hidden", worker_as="nobody")
    assert hidden == {"uid": str(nobody.pw_uid), "home": hidden["home"], "leaks": "0"}


def test_a_step_user_is_a_user_other_than_root() -> None:
    assert StepUser.parse(None) is None
    assert StepUser.parse(" ") is None
    with pytest.raises(ValueError, match="no such user 'no-such-baton-user'"):
        StepUser.parse("no-such-baton-user")
    with pytest.raises(ValueError, match="may not run as root"):
        StepUser.parse("root")


@needs_root
def test_a_step_run_as_another_user_cannot_read_the_workers_environment() -> None:
    """As the worker's own user a step reads, from /proc/<worker pid>/environ, every secret
    the worker was started with, allow-list or not; as BATON_STEP_USER it cannot."""
    assert _run_worker("self")["leaks"] == "1"  # the hole BATON_STEP_USER closes
    nobody = pwd.getpwnam("nobody")
    assert _run_worker("nobody") == {
        "uid": str(nobody.pw_uid),
        "home": nobody.pw_dir,
        "leaks": "0",
    }


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("BATON_STEP_ENV_ALLOW", "PATH,*", "'*' is neither a variable name nor NAME*"),
        ("BATON_STEP_ENV_ALLOW", "BATON_*", "would pass the worker's own BATON_* settings"),
        ("BATON_STEP_USER", "no-such-baton-user", "no such user 'no-such-baton-user'"),
    ],
)
def test_a_worker_with_a_bad_step_setting_exits_before_serving(
    name: str, value: str, reason: str
) -> None:
    env = {**os.environ, name: value, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    env.pop("BATON_SQL_CONNECTIONS", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.worker"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert reason in done.stderr


@needs_root
def test_the_start_probe_says_why_the_step_user_cannot_run_python_steps() -> None:
    nobody = StepUser.parse("nobody")
    assert nobody is not None
    fault = nobody.python_fault("/no/such/python", "/", {})
    assert fault is not None and "No such file or directory" in fault
    assert nobody.python_fault("/bin/true", "/", {}) is None


@needs_root
async def test_a_python_step_runs_as_the_step_user_too() -> None:
    nobody = pwd.getpwnam("nobody")
    runtime = PythonRuntime(cwd=str(REPO_ROOT), step_user=StepUser.parse("nobody"))
    config = json.dumps({"function": "tests.unit.worker.step_user_worker:whoami"})
    task = Task("i", "w", "s", 1, 1, "python", "default", config, "{}", 30.0, 0)
    outcome = await runtime.run(task)
    assert isinstance(outcome, StepSuccess), outcome
    assert outcome.outputs == {
        "uid": nobody.pw_uid,
        "home": nobody.pw_dir,
        "reads_worker_env": False,
    }
    as_worker = await PythonRuntime(cwd=str(REPO_ROOT)).run(task)
    assert isinstance(as_worker, StepSuccess) and as_worker.outputs["reads_worker_env"]
