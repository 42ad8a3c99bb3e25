"""Workflows end to end through the API, on the real processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e

FAST_RETRY = {"type": "fixed", "user_seconds": 0.2, "platform_seconds": 0.2, "timeout_seconds": 0.2}


async def test_diamond_of_every_step_type_succeeds(baton: Baton) -> None:
    wid = unique("diamond")
    await baton.push(
        {
            "id": wid,
            "params": {"a": 2, "b": 3, "greeting": "hello"},
            "steps": [
                {"id": "root", "type": "noop", "next": ["say", "nap"]},
                {
                    "id": "say",
                    "type": "shell",
                    "command": 'echo "$greeting from $BATON_STEP_ID"',
                    "next": ["sum"],
                },
                {"id": "nap", "type": "sleep", "duration": "300ms", "next": ["sum"]},
                {"id": "sum", "type": "python", "function": "examples.steps:add"},
            ],
        }
    )
    iid = await baton.start(wid, {"b": 40})
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED")
    assert inst["status"] == "SUCCEEDED", inst
    steps = await baton.steps(iid)
    assert {k: v["status"] for k, v in steps.items()} == dict.fromkeys(
        ["root", "say", "nap", "sum"], "SUCCEEDED"
    )
    (attempt,) = await baton.attempts(iid, "sum")
    assert attempt["outputs"] == {"sum": 42}
    events = await baton.events(iid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_shell_step_fails_twice_then_succeeds_under_its_retry_policy(
    baton: Baton, tmp_path: Path
) -> None:
    wid = unique("flaky")
    counter = tmp_path / "count"
    await baton.push(
        {
            "id": wid,
            "steps": [
                {
                    "id": "flaky",
                    "type": "shell",
                    "params": {"COUNTER": str(counter)},
                    "command": 'n=$(cat "$COUNTER" 2>/dev/null || echo 0); n=$((n+1)); '
                    'echo $n > "$COUNTER"; echo "try $n"; [ "$n" -ge 3 ]',
                    "retry_policy": {"user_limit": 2, "backoff": FAST_RETRY},
                }
            ],
        }
    )
    iid = await baton.start(wid)
    assert (await baton.wait_status(iid, "SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"
    attempts = await baton.attempts(iid, "flaky")
    assert [a["status"] for a in attempts] == ["USER_FAILED", "USER_FAILED", "SUCCEEDED"]
    assert attempts[0]["message"] == "exit code 1"
    assert "try 1" in attempts[0]["output_tail"]


async def test_step_timeout_fails_the_step_as_a_timeout(baton: Baton) -> None:
    wid = unique("slow")
    await baton.push(
        {
            "id": wid,
            "steps": [{"id": "slow", "type": "shell", "command": "sleep 30", "timeout": "1s"}],
        }
    )
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED", timeout=30)
    assert inst["status"] == "FAILED"
    assert inst["failed_steps"] == ["slow"]
    (attempt,) = await baton.attempts(iid, "slow")
    assert attempt["failure_kind"] == "TIMEOUT"
    assert (await baton.steps(iid))["slow"]["status"] == "TIMEOUT_FAILED"


def _failing_pair(wid: str, mode: str) -> dict[str, object]:
    return {
        "id": wid,
        "steps": [
            {"id": "start", "type": "noop", "next": ["bad", "slow"]},
            {
                "id": "bad",
                "type": "shell",
                "command": "exit 3",
                "failure_mode": mode,
                "retry_policy": {"user_limit": 0},
                "next": ["after_bad"],
            },
            {"id": "after_bad", "type": "noop"},
            {"id": "slow", "type": "shell", "command": "sleep 2", "next": ["after_slow"]},
            {"id": "after_slow", "type": "noop"},
        ],
    }


async def test_fail_immediately_stops_the_running_branch(baton: Baton) -> None:
    wid = unique("fail-now")
    await baton.push(_failing_pair(wid, "FAIL_IMMEDIATELY"))
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "FAILED", "SUCCEEDED")
    assert inst["status"] == "FAILED"
    steps = await baton.steps(iid)
    assert steps["bad"]["status"] == "USER_FAILED"
    assert steps["slow"]["status"] == "STOPPED"
    assert steps["after_slow"]["status"] == "NOT_CREATED"


async def test_fail_after_running_lets_other_branches_finish(baton: Baton) -> None:
    wid = unique("fail-after")
    await baton.push(_failing_pair(wid, "FAIL_AFTER_RUNNING"))
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "FAILED", "SUCCEEDED")
    assert inst["status"] == "FAILED"
    steps = await baton.steps(iid)
    assert steps["slow"]["status"] == "SUCCEEDED"
    assert steps["after_slow"]["status"] == "SUCCEEDED"
    assert steps["after_bad"]["status"] == "NOT_CREATED"


async def test_ignore_failure_completes_with_error_and_continues(baton: Baton) -> None:
    wid = unique("ignore")
    await baton.push(_failing_pair(wid, "IGNORE_FAILURE"))
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "FAILED", "SUCCEEDED")
    assert inst["status"] == "SUCCEEDED"
    steps = await baton.steps(iid)
    assert steps["bad"]["status"] == "COMPLETED_WITH_ERROR"
    assert steps["after_bad"]["status"] == "SUCCEEDED"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_stop_and_kill_end_the_running_step_and_later_actions_conflict(
    baton: Baton, tmp_path: Path
) -> None:
    wid = unique("long")
    await baton.push(
        {
            "id": wid,
            "steps": [
                {"id": "long", "type": "shell", "command": 'echo $$ > "$PIDFILE"; exec sleep 60'}
            ],
        }
    )
    pidfiles = {action: tmp_path / f"{action}.pid" for action in ("stop", "kill")}
    ids = {a: await baton.start(wid, {"PIDFILE": str(f)}) for a, f in pidfiles.items()}
    for action, iid in ids.items():
        await baton.wait_step(iid, "long", "RUNNING")
        await wait_until_async(lambda f=pidfiles[action]: f.exists() and f.read_text().strip())
        assert (await baton.act(iid, action)).status_code == 202
    assert (await baton.wait_status(ids["stop"], "STOPPED"))["status"] == "STOPPED"
    assert (await baton.wait_status(ids["kill"], "FAILED"))["status"] == "FAILED"
    assert (await baton.steps(ids["stop"]))["long"]["status"] == "STOPPED"
    # The engine's cancellation reached the worker: the steps' processes are gone.
    for f in pidfiles.values():
        pid = int(f.read_text())
        await wait_until_async(lambda pid=pid: not _alive(pid), timeout=15, message=f"{pid} killed")
    conflict = await baton.act(ids["stop"], "stop")
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert "STOPPED" in conflict.json()["detail"]


async def test_restart_reruns_from_the_failed_step(baton: Baton, tmp_path: Path) -> None:
    wid = unique("restart")
    gate = tmp_path / "gate"
    await baton.push(
        {
            "id": wid,
            "steps": [
                {"id": "first", "type": "noop", "next": ["gated"]},
                {
                    "id": "gated",
                    "type": "shell",
                    "params": {"GATE": str(gate)},
                    "command": 'test -f "$GATE"',
                    "retry_policy": {"user_limit": 0},
                    "next": ["last"],
                },
                {"id": "last", "type": "noop"},
            ],
        }
    )
    iid = await baton.start(wid)
    assert (await baton.wait_status(iid, "FAILED", "SUCCEEDED"))["status"] == "FAILED"
    conflict = await baton.act(iid, "kill")
    assert conflict.status_code == 409
    gate.write_text("open")
    assert (await baton.act(iid, "restart")).status_code == 202
    await baton.wait_status(iid, "IN_PROGRESS", "SUCCEEDED", timeout=30)
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED")
    assert inst["status"] == "SUCCEEDED"
    assert inst["run"] == 2
    assert len(await baton.attempts(iid, "first")) == 1  # succeeded in run 1: not re-run
    assert [a["status"] for a in await baton.attempts(iid, "gated")] == ["USER_FAILED", "SUCCEEDED"]


async def test_the_same_idempotency_key_starts_one_instance(baton: Baton) -> None:
    wid = unique("once")
    await baton.push({"id": wid, "steps": [{"id": "n", "type": "noop"}]})
    key = unique("key")
    first, second = await baton.start(wid, key=key), await baton.start(wid, key=key)
    assert first == second
    await baton.wait_status(first, "SUCCEEDED")
    types = [e["type"] for e in await baton.events(first)]
    assert types.count("InstanceStarted") == 1
    assert types.count("StepAttemptSucceeded") == 1
    other = await baton.start(wid, key=unique("key"))
    assert other != first
