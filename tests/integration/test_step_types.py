"""The http and sql step runtimes against real servers: local HTTP servers (IPv4 and IPv6
loopback), the system's resolver, and the test session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from services.domain.kernel.statuses import FailureKind
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepFailure, StepSuccess
from services.worker.runtimes.http import HttpRuntime
from services.worker.runtimes.http_allow import HostAllowList
from services.worker.runtimes.sql import SqlRuntime


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
            reply = {"path": self.path, "host": self.headers["host"]}
            self._send(200, "application/json", json.dumps(reply).encode())

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


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _serving(httpd: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """The port of a server on 127.0.0.1."""
    yield from _serving(ThreadingHTTPServer(("127.0.0.1", 0), _Handler))


@pytest.fixture(scope="module")
def server(port: int) -> str:
    return f"http://127.0.0.1:{port}"


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


ALLOW_LOCAL = HttpRuntime(HostAllowList(["127.0.0.1:*"]))


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


async def test_a_name_allowed_by_name_is_not_reached_at_a_loopback_address(port: int) -> None:
    """`localhost` is allowed by name, but it resolves to 127.0.0.1: refused, as a name whose
    DNS answers an internal address (rebinding) is."""
    runtime = HttpRuntime(HostAllowList([f"localhost:{port}"]))
    out = await runtime.run(task("http", http(f"http://localhost:{port}/x")))
    assert isinstance(out, StepFailure), out
    assert out.kind is FailureKind.USER
    assert out.message == (
        "host localhost resolves to 127.0.0.1, which is not a public address: allow it with"
        f" an address entry in BATON_HTTP_ALLOWED_HOSTS (such as 127.0.0.1:{port})"
    )


async def test_an_address_entry_is_the_opt_in_that_lets_it_through(port: int) -> None:
    runtime = HttpRuntime(HostAllowList.from_env(f"localhost:{port}, 127.0.0.1:{port}"))
    out = await runtime.run(task("http", http(f"http://localhost:{port}/x")))
    assert isinstance(out, StepSuccess), out
    assert out.outputs["body"] == {"path": "/x", "host": f"localhost:{port}"}


async def test_an_entry_without_a_port_allows_the_default_port_only(port: int) -> None:
    runtime = HttpRuntime(HostAllowList.from_env("127.0.0.1"))
    out = await runtime.run(task("http", http(f"http://127.0.0.1:{port}/")))
    assert isinstance(out, StepFailure), out
    assert out.message == (
        f"host 127.0.0.1:{port} is not allowed on this worker (BATON_HTTP_ALLOWED_HOSTS)"
    )


async def test_an_ipv6_literal_is_written_in_brackets_in_the_allow_list() -> None:
    for port in _serving(_Server6(("::1", 0), _Handler)):
        runtime = HttpRuntime(HostAllowList.from_env(f"[::1]:{port}"))
        out = await runtime.run(task("http", http(f"http://[::1]:{port}/six")))
        assert isinstance(out, StepSuccess), out
        assert out.outputs["body"] == {"path": "/six", "host": f"[::1]:{port}"}


async def test_the_connection_goes_to_the_checked_address_with_the_urls_host(port: int) -> None:
    """The worker resolves once and connects to the address it checked: the name is never
    resolved again (here the system could not: `.invalid` names do not exist), and the
    server still sees the url's host."""
    asked: list[str] = []

    async def resolve(host: str, at: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    allowed = HostAllowList.from_env(f"api.invalid:{port}, 127.0.0.1:{port}")
    out = await HttpRuntime(allowed, resolve).run(
        task("http", http(f"http://api.invalid:{port}/p", headers={"Host": "other.example"}))
    )
    assert isinstance(out, StepSuccess), out
    assert out.outputs["body"] == {"path": "/p", "host": f"api.invalid:{port}"}
    assert asked == ["api.invalid"]


async def test_https_to_the_checked_address_verifies_the_certificate_of_the_urls_name() -> None:
    """The connection goes to the checked address, and TLS still names the url's host (SNI)
    and verifies its certificate against that name, not against the address."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("api.example.test").configure_cert(server_tls)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = server_tls.wrap_socket(httpd.socket, server_side=True)
    trust = ssl.create_default_context()
    ca.configure_trust(trust)

    async def resolve(host: str, at: int) -> list[str]:
        return ["127.0.0.1"]

    for port in _serving(httpd):
        allowed = HostAllowList.from_env(f"api.example.test:{port}, 127.0.0.1:{port}")
        runtime = HttpRuntime(allowed, resolve, trust)
        out = await runtime.run(task("http", http(f"https://api.example.test:{port}/tls")))
        assert isinstance(out, StepSuccess), out
        assert out.outputs["body"] == {"path": "/tls", "host": f"api.example.test:{port}"}
        # A certificate for another name is refused, although the address is the same.
        allowed = HostAllowList.from_env(f"other.example.test:{port}, 127.0.0.1:{port}")
        out = await HttpRuntime(allowed, resolve, trust).run(
            task("http", http(f"https://other.example.test:{port}/tls"))
        )
        assert isinstance(out, StepFailure) and "CERTIFICATE_VERIFY_FAILED" in out.message, out


async def test_a_url_in_an_unusual_spelling_is_refused_when_filled(port: int) -> None:
    """A template can make what push could not see: the filled url is checked again."""
    url = "http://${h}:" + str(port) + "/"
    out = await ALLOW_LOCAL.run(task("http", http(url), {"h": "127.1"}))
    assert isinstance(out, StepFailure), out
    assert "'127.1' reads as an IPv4 address in an unusual spelling" in out.message


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
