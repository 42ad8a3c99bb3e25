"""What a step's processes see of the worker, end to end: a shell step's `env` and a python
step's `os.environ` show none of the worker's secrets (the stack's worker holds
BATON_SQL_CONNECTIONS with a DSN and E2E_WORKER_SECRET), and params cannot name the
variables that decide what a step executes — refused at push, at start and at restart."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.conftest import WORKER_SECRET
from tests.e2e.client import Baton, unique

pytestmark = pytest.mark.e2e


def environment() -> dict[str, Any]:
    """A python step (run by the worker, importing this module): its whole environment."""
    return {"environ": dict(os.environ)}


async def test_steps_see_none_of_the_workers_secrets(baton: Baton) -> None:
    wid = unique("env")
    await baton.push(
        {
            "id": wid,
            "params": {"day": "mon"},
            "steps": [
                {
                    "id": "shell",
                    "type": "shell",
                    "command": "env; exit 1",
                    "retry_policy": {"user_limit": 0},
                },
                {"id": "python", "type": "python", "function": f"{__name__}:environment"},
            ],
        }
    )
    iid = await baton.start(wid)
    await baton.wait_step(iid, "python", "SUCCEEDED")
    await baton.wait_step(iid, "shell", "USER_FAILED")
    (shell,) = await baton.attempts(iid, "shell")
    (python,) = await baton.attempts(iid, "python")
    seen = {
        "shell": {
            line.split("=", 1)[0] for line in shell["output_tail"].splitlines() if "=" in line
        },
        "python": set(python["outputs"]["environ"]),
    }
    for step, names in seen.items():
        assert "PATH" in names and "BATON_INSTANCE_ID" in names, (step, names)
        assert "BATON_SQL_CONNECTIONS" not in names, step
        assert "E2E_WORKER_SECRET" not in names, step
        assert "DATABASE_URL" not in names, step
    assert "day" in seen["shell"]
    everything = shell["output_tail"] + json.dumps(python["outputs"])
    assert WORKER_SECRET not in everything
    assert "postgresql://" not in everything


def _faults(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["path"]: e["message"] for e in response.json()["errors"]}


async def test_params_named_like_what_a_step_executes_are_refused_at_push(baton: Baton) -> None:
    wid = unique("path-param")
    response = await baton.http.post(
        "/workflows",
        json={
            "id": wid,
            "params": {"PATH": "/tmp/evil"},
            "steps": [
                {
                    "id": "ls",
                    "type": "shell",
                    "command": "ls",
                    "params": {"LD_PRELOAD": "/tmp/evil.so"},
                }
            ],
        },
    )
    faults = _faults(response)
    assert set(faults) == {"params.PATH", "steps[0].params.LD_PRELOAD"}
    assert "'PATH' is reserved" in faults["params.PATH"]
    assert (await baton.http.get(f"/workflows/{wid}")).status_code == 404


async def test_undeclared_params_that_would_replace_the_environment_are_refused_at_start_and_restart(
    baton: Baton,
) -> None:
    wid = unique("path-start")
    await baton.push({"id": wid, "steps": [{"id": "ls", "type": "shell", "command": "ls"}]})
    refused = await baton.http.post(
        f"/workflows/{wid}/instances",
        json={"params": {"PATH": "/tmp/evil", "BASH_ENV": "/tmp/x.sh", "day": "mon"}},
    )
    faults = _faults(refused)
    assert set(faults) == {"params.PATH", "params.BASH_ENV"}
    assert await baton.list_instances(workflow_id=wid) == []  # nothing was started

    iid = await baton.start(wid)
    await baton.wait_status(iid, "SUCCEEDED", "FAILED")
    restart = await baton.http.post(
        f"/instances/{iid}/actions/restart", json={"params": {"GIT_SSH_COMMAND": "sh -c id"}}
    )
    assert set(_faults(restart)) == {"params.GIT_SSH_COMMAND"}
