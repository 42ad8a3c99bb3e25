"""The registry: which runtime runs each step type.

It imports every runtime and none imports it; the worker's composition root builds it once
(``default_runtimes``) and the runner looks a task's runtime up in it (``runtime_for``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepOutcome, StepRuntime, StepSuccess, failure
from services.worker.runtimes.http import HttpRuntime
from services.worker.runtimes.http_allow import HostAllowList
from services.worker.runtimes.python import PythonRuntime
from services.worker.runtimes.shell import ShellRuntime
from services.worker.runtimes.sql import SqlRuntime, connections_from_env
from services.worker.runtimes.sql_roles import allowed_superusers
from services.worker.step_env import StepUser


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
    """The runtime of ``step_type``; a ``MissingRuntime`` when this worker has none."""
    runtime = registry.get(step_type)
    return runtime if runtime is not None else MissingRuntime(step_type)


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
    return {
        "noop": NoopRuntime(),
        "shell": ShellRuntime(base_env, step_user),
        "python": PythonRuntime(base_env, cwd, python_path, step_user),
        "http": HttpRuntime(HostAllowList.from_env(http_allowed_hosts)),
        "sql": SqlRuntime(
            connections_from_env(sql_connections), allowed_superusers(sql_allow_superuser)
        ),
    }
