"""kill -9 a worker in the middle of a step: the engine notices the silence (no heartbeats),
fails the attempt as a platform failure and retries it; the re-delivered old attempt's
reports change nothing."""

from __future__ import annotations

import signal

import pytest

from services.cli.stack import Stack
from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.chaos


async def test_a_dead_worker_is_detected_and_its_attempt_retried(
    baton: Baton, stack: Stack
) -> None:
    wid = unique("worker-crash")
    await baton.push(
        {
            "id": wid,
            "steps": [
                {
                    "id": "work",
                    "type": "shell",
                    "command": "sleep 2; echo done",
                    "retry_policy": {
                        "platform_limit": 2,
                        "backoff": {"type": "fixed", "platform_seconds": 0.2},
                    },
                }
            ],
        }
    )
    iid = await baton.start(wid)
    await baton.wait_step(iid, "work", "RUNNING", timeout=30)
    stack.kill("worker", signal.SIGKILL)

    async def first_attempt_failed() -> bool:
        attempts = await baton.attempts(iid, "work")
        return bool(attempts) and attempts[0]["status"] == "PLATFORM_FAILED"

    # BATON_HEARTBEAT_TIMEOUT is 5 s in the test environment.
    await wait_until_async(first_attempt_failed, timeout=30, message="silence noticed")
    stack.restart("worker")
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED", timeout=90)
    assert inst["status"] == "SUCCEEDED"
    attempts = await baton.attempts(iid, "work")
    assert [a["status"] for a in attempts] == ["PLATFORM_FAILED", "SUCCEEDED"]
    assert attempts[0]["failure_kind"] == "PLATFORM"
    assert "silent" in attempts[0]["message"]
    # The restarted worker also re-ran attempt 1 (its offset was never committed); those
    # reports are stale and decided nothing.
    types = [e["type"] for e in await baton.events(iid)]
    assert types.count("StepAttemptSucceeded") == 1
