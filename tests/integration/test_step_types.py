"""The http and sql step runtimes against real servers: a local HTTP server, and the test
session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.domain.statuses import FailureKind
from services.domain.tasks import Task
from services.worker.http_runtime import HostAllowList, HttpRuntime
from services.worker.runtimes import StepFailure, StepSuccess
from services.worker.sql_runtime import SqlRuntime


def task(step_type: str, config: dict[str, Any], params: dict[str, Any] | None = None) -> Task:
    return Task(
        instance_id="i-1",
        workflow_id="wf",
        step_id="s",
        attempt=1,
        run=1,
        step_type=step_type,
        queue="default",
        config=json.dumps(config),
        params=json.dumps(params or {}),
        timeout_seconds=5.0,
        created_at=0,
    )


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/big"):
            self._send(200, "text/plain", b"x" * 100_000)
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("location", "http://10.0.0.1/secret")
            self.end_headers()
        elif self.path.startswith("/missing"):
            self._send(404, "text/plain", b"no such thing")
        else:
            self._send(200, "application/json", json.dumps({"path": self.path}).encode())

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        body = json.loads(self.rfile.read(length))
        reply = {"got": body, "auth": self.headers.get("authorization")}
        self._send(201, "application/json", json.dumps(reply).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def http(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "url": url,
        "method": "GET",
        "headers": {},
        "body": None,
        "expected_statuses": [],
        "max_response_bytes": 64 * 1024,
        **fields,
    }


ALLOW_LOCAL = HttpRuntime(HostAllowList(["127.0.0.1"]))


async def test_an_http_step_fills_its_templates_and_returns_the_json_response(server: str) -> None:
    out = await ALLOW_LOCAL.run(
        task(
            "http",
            http(
                server + "/items/${params.id}",
                method="POST",
                headers={"authorization": "Bearer ${token}"},
                body={"day": "${day}", "n": 3},
                expected_statuses=[201],
            ),
            {"id": 7, "token": "t0k", "day": "2024-01-01"},
        )
    )
    assert isinstance(out, StepSuccess), out
    assert out.outputs["status"] == 201
    assert out.outputs["body"] == {"got": {"day": "2024-01-01", "n": 3}, "auth": "Bearer t0k"}
    assert out.outputs["headers"]["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("runtime", "path", "fields", "kind", "needle"),
    [
        (
            HttpRuntime(HostAllowList([])),
            "/",
            {},
            FailureKind.USER,
            "is not allowed on this worker",
        ),
        (ALLOW_LOCAL, "/missing", {}, FailureKind.USER, "HTTP 404 (expected 2xx)"),
        (ALLOW_LOCAL, "/big", {}, FailureKind.USER, "the response is over 65536 bytes"),
        (ALLOW_LOCAL, "/redirect", {}, FailureKind.USER, "HTTP 302 (expected 2xx)"),
        (ALLOW_LOCAL, "/${nope}", {}, FailureKind.USER, "unknown name nope"),
    ],
)
async def test_http_failures_are_the_steps_with_a_clear_message(
    server: str,
    runtime: HttpRuntime,
    path: str,
    fields: dict[str, Any],
    kind: FailureKind,
    needle: str,
) -> None:
    out = await runtime.run(task("http", http(server + path, **fields)))
    assert isinstance(out, StepFailure), out
    assert out.kind is kind and needle in out.message, out.message


def test_the_allow_list_matches_hosts_ports_and_subdomains() -> None:
    allowed = HostAllowList.from_env("api.example.com, *.internal.corp, 127.0.0.1:8080")
    assert allowed.allows("API.example.com", 443)
    assert allowed.allows("db.internal.corp", 80)
    assert not allowed.allows("internal.corp.evil.com", 80)
    assert allowed.allows("127.0.0.1", 8080) and not allowed.allows("127.0.0.1", 8081)
    assert not HostAllowList.from_env("").allows("localhost", 80)


def sql(statement: str, **fields: Any) -> dict[str, Any]:
    return {
        "connection": "db",
        "statement": statement,
        "args": [],
        "max_rows": 1000,
        "read_only": True,
        **fields,
    }


async def test_a_sql_step_binds_its_args_and_returns_bounded_rows(postgres: str) -> None:
    # The session's superuser, allowed as an operator would (BATON_SQL_ALLOW_SUPERUSER): these
    # tests create tables; test_sql_roles.py pins the refusal.
    runtime = SqlRuntime({"db": postgres}, allow_superuser=frozenset({"db"}))
    out = await runtime.run(
        task(
            "sql",
            sql(
                "SELECT g AS n, $1::text AS label, now()::date AS day FROM generate_series(1, $2::int) g",
                args=["${label}", 5],
                max_rows=3,
            ),
            {"label": "x'; DROP TABLE y; --"},
        )
    )
    assert isinstance(out, StepSuccess), out
    assert out.outputs["row_count"] == 3 and out.outputs["truncated"] is True
    first = out.outputs["rows"][0]
    assert first["n"] == 1 and first["label"] == "x'; DROP TABLE y; --"  # bound, not spliced
    assert len(first["day"]) == 10


async def test_sql_failures_name_the_cause(postgres: str) -> None:
    # The session's superuser, allowed as an operator would (BATON_SQL_ALLOW_SUPERUSER): these
    # tests create tables; test_sql_roles.py pins the refusal.
    runtime = SqlRuntime({"db": postgres}, allow_superuser=frozenset({"db"}))
    out = await runtime.run(task("sql", sql("CREATE TABLE t_sql_step (x int)")))
    assert isinstance(out, StepFailure) and "read-only transaction" in out.message
    out = await runtime.run(task("sql", sql("SELECT 1", connection="other")))
    assert isinstance(out, StepFailure) and "no sql connection 'other'" in out.message
    out = await runtime.run(task("sql", sql("SELEC 1")))
    assert isinstance(out, StepFailure) and out.kind is FailureKind.USER
    assert "syntax error" in out.message
    slow = dataclasses.replace(task("sql", sql("SELECT pg_sleep(10)")), timeout_seconds=0.3)
    out = await runtime.run(slow)
    assert isinstance(out, StepFailure) and out.kind is FailureKind.TIMEOUT
    assert "longer than 0.3s" in out.message
