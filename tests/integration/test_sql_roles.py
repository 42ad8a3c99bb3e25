"""A sql connection's role is the boundary of its steps: `read_only` does not stop a superuser
from reading the database host's files or running programs there. Against the session's real
PostgreSQL: the worker refuses superuser connections unless allowed (at start, and when a
step connects), warns about roles with powers over the host, and never shows the DSN."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from services.adapters.settings import REPO_ROOT
from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepFailure, StepSuccess
from services.worker.runtimes.sql import SqlRuntime
from services.worker.runtimes.sql_roles import check_connections
from tests.helpers import login_role

pytestmark = pytest.mark.integration

PASSWORD = "dsn-pw-s3cret"
log = logging.getLogger("test.sql_roles")


def sql_task(statement: str) -> Task:
    config = {
        "connection": "db",
        "statement": statement,
        "args": [],
        "max_rows": 10,
        "read_only": True,
    }
    return Task(
        instance_id="i-1",
        workflow_id="wf",
        step_id="s",
        attempt=1,
        run=1,
        step_type="sql",
        queue="default",
        config=json.dumps(config),
        params="{}",
        timeout_seconds=5.0,
        created_at=0,
    )


def with_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{PASSWORD}@{host}"


async def test_a_read_only_step_on_a_superuser_connection_is_refused_without_running(
    postgres: str,
) -> None:
    runtime = SqlRuntime({"db": with_password(postgres)})
    for statement in (
        "SELECT pg_read_file('/etc/hostname') AS f",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/baton-sql-program-ran'",
    ):
        out = await runtime.run(sql_task(statement))
        assert isinstance(out, StepFailure), out
        assert out.kind is FailureKind.PLATFORM
        assert "'db' connects as role 'postgres'" in out.message
        assert "BATON_SQL_ALLOW_SUPERUSER" in out.message
        assert PASSWORD not in out.message + out.output_tail


async def test_a_superuser_connection_the_operator_allowed_runs(postgres: str) -> None:
    runtime = SqlRuntime({"db": postgres}, allow_superuser=frozenset({"db"}))
    out = await runtime.run(sql_task("SELECT current_setting('is_superuser') AS su"))
    assert isinstance(out, StepSuccess), out
    assert out.outputs["rows"] == [{"su": "on"}]


async def test_a_member_of_a_superuser_role_counts_as_a_superuser(postgres: str) -> None:
    url = await login_role(postgres, "baton_test_su_member", PASSWORD, "postgres")
    out = await SqlRuntime({"db": url}).run(sql_task("SELECT 1 AS one"))
    assert isinstance(out, StepFailure) and out.kind is FailureKind.PLATFORM, out
    assert "role 'baton_test_su_member'" in out.message


async def test_a_plain_role_runs_and_cannot_read_the_hosts_files(postgres: str) -> None:
    url = await login_role(postgres, "baton_test_plain", PASSWORD)
    runtime = SqlRuntime({"db": url})
    out = await runtime.run(sql_task("SELECT current_user AS me"))
    assert isinstance(out, StepSuccess), out
    assert out.outputs["rows"] == [{"me": "baton_test_plain"}]
    out = await runtime.run(sql_task("SELECT pg_read_file('/etc/hostname') AS f"))
    assert isinstance(out, StepFailure) and out.kind is FailureKind.USER, out
    assert "permission denied" in out.message


async def test_the_start_check_refuses_superusers_and_warns_about_host_powers(
    postgres: str, caplog: pytest.LogCaptureFixture
) -> None:
    plain = await login_role(postgres, "baton_test_plain", PASSWORD)
    reader = await login_role(postgres, "baton_test_files", PASSWORD, "pg_read_server_files")
    runner = await login_role(postgres, "baton_test_prog", PASSWORD, "pg_execute_server_program")
    connections = {
        "plain": plain,
        "reader": reader,
        "runner": runner,
        "su": with_password(postgres),
        "su_ok": with_password(postgres),
        "down": f"postgresql://x:{PASSWORD}@127.0.0.1:1/db",
        "bad": f"postgresql://x:{PASSWORD}@127.0.0.1:notaport/db",
    }
    with caplog.at_level(logging.WARNING, logger=log.name):
        refused = await check_connections(connections, frozenset({"su_ok"}), log)
    assert len(refused) == 2
    assert refused[0].startswith("sql connection 'bad' has an invalid DSN")
    assert refused[1].startswith("sql connection 'su' connects as role 'postgres'")
    warnings = {r.args[0]: r.getMessage() for r in caplog.records if r.args}  # type: ignore[index]
    assert set(warnings) == {"reader", "runner", "su_ok", "down"}
    assert "pg_read_server_files" in warnings["reader"]
    assert "pg_execute_server_program" in warnings["runner"]
    assert "allowed by BATON_SQL_ALLOW_SUPERUSER" in warnings["su_ok"]
    assert "cannot be checked now" in warnings["down"]
    everything = " ".join(refused) + " ".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in everything


def test_a_worker_with_a_superuser_connection_not_allowed_exits_before_serving(
    postgres: str,
) -> None:
    env = {
        **os.environ,
        "BATON_SQL_CONNECTIONS": json.dumps({"warehouse": with_password(postgres)}),
        # Nothing listens there: the worker must exit before it needs Kafka.
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    env.pop("BATON_SQL_ALLOW_SUPERUSER", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.worker", "--queue", "default"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert "refusing to start: sql connection 'warehouse' connects as role 'postgres'" in (
        done.stderr
    )
    assert PASSWORD not in done.stderr + done.stdout
