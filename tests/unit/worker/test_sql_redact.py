"""A sql connection's DSN holds its password: no message the worker makes of a connection's
errors may carry it (to a step's failure, and from there to baton.events, or to the log)."""

from __future__ import annotations

import json

import pytest

from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepFailure
from services.worker.runtimes.sql import SqlRuntime
from services.worker.runtimes.sql_roles import redact


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql://reader:s3cret@db:5432/wh", "s3cret"),
        ("postgresql://reader:p%40ss%2Fw@db/wh", "p@ss/w"),
        ("postgresql://reader@db/wh?password=qs-s3cret&sslmode=require", "qs-s3cret"),
    ],
)
def test_the_password_of_the_dsn_is_masked_in_a_message(dsn: str, password: str) -> None:
    message = f"could not connect with {dsn} (password {password}, raw {dsn.split('@')[0]})"
    masked = redact(message, dsn)
    assert password not in masked
    assert "s3cret" not in masked and "p%40ss" not in masked
    assert "***" in masked


def test_a_dsn_without_a_password_or_one_that_is_no_url_leaves_the_message() -> None:
    assert redact("boom", "postgresql://reader@db/wh") == "boom"
    assert redact("Invalid IPv6 URL", "postgresql://u:pw@[::1/db") == "Invalid IPv6 URL"


async def test_a_sql_step_on_an_invalid_dsn_is_a_platform_failure_naming_the_connection() -> None:
    """The worker's configuration is at fault, not the step; before, the ValueError escaped
    the runtime and its traceback became the attempt's output tail."""
    runtime = SqlRuntime({"wh": "postgresql://reader:s3cret@127.0.0.1:notaport/wh"})
    config = {"connection": "wh", "statement": "SELECT 1", "args": [], "max_rows": 1}
    task = Task(
        instance_id="i-1",
        workflow_id="wf",
        step_id="s",
        attempt=1,
        run=1,
        step_type="sql",
        queue="default",
        config=json.dumps({**config, "read_only": True}),
        params="{}",
        timeout_seconds=5.0,
        created_at=0,
    )
    out = await runtime.run(task)
    assert isinstance(out, StepFailure) and out.kind is FailureKind.PLATFORM, out
    assert out.message.startswith("sql connection 'wh' has an invalid DSN: ")
    assert "s3cret" not in out.message + out.output_tail
