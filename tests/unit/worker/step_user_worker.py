"""A stand-in worker for test_step_env:
`python -m tests.unit.worker.step_user_worker USER|self [--hidden]`.

Started with a secret in its environment (hidden from its own user with --hidden, as the
worker hides itself), it runs one shell step (as USER, or as itself)
that counts the secret in the worker's /proc/<pid>/environ and says who it is, and prints
the step's outputs as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepSuccess
from services.worker.runtimes.shell import ShellRuntime
from services.worker.step_env import StepUser, hide_worker_process

SECRET = "proc-s3cret"
COMMAND = (
    f"leaks=$(tr '\\0' '\\n' < /proc/$PPID/environ | grep -c {SECRET}); "
    'printf \'{"uid": "%s", "home": "%s", "leaks": "%s"}\' "$(id -u)" "$HOME" "$leaks"'
    ' > "$BATON_OUTPUTS"'
)


def main(user: str, hidden: bool) -> None:
    if hidden:
        assert hide_worker_process()
    step_user = None if user == "self" else StepUser.parse(user)
    config = json.dumps({"command": COMMAND})
    task = Task("i", "w", "s", 1, 1, "shell", "default", config, "{}", 10.0, 0)
    outcome = asyncio.run(ShellRuntime(step_user=step_user).run(task))
    assert isinstance(outcome, StepSuccess), outcome
    print(json.dumps(dict(outcome.outputs)))


if __name__ == "__main__":
    main(sys.argv[1], hidden="--hidden" in sys.argv[2:])


def whoami() -> dict[str, object]:
    """A python step: who runs it, and whether it can read its worker's environment."""
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as f:
            f.read()
    except PermissionError:
        return {"uid": os.getuid(), "home": os.environ["HOME"], "reads_worker_env": False}
    return {"uid": os.getuid(), "home": os.environ["HOME"], "reads_worker_env": True}
