"""The http and sql step types end to end: a worker calls a local server and queries the
session's database, and their outputs drive what runs next."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.client import Baton, unique

pytestmark = pytest.mark.e2e


class _Items(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = json.dumps({"path": self.path, "count": 2}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def items_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Items)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_http_and_sql_outputs_flow_into_the_next_steps(
    baton: Baton, items_server: str
) -> None:
    wid = unique("fetch")
    await baton.push(
        {
            "id": wid,
            "params": {"base": items_server},
            "steps": [
                {
                    "id": "fetch",
                    "type": "http",
                    "url": "${base}/items/42",
                    "next": ["count"],
                },
                {
                    "id": "count",
                    "type": "sql",
                    "connection": "baton",
                    "params": {
                        "wid": {"type": "string", "expression": "workflow.id"},
                        "want": {"type": "long", "expression": "steps.fetch.outputs.body.count"},
                    },
                    "statement": "SELECT count(*)::int AS n, $2::int AS want"
                    " FROM workflow_versions WHERE workflow_id = $1",
                    "args": ["${wid}", "${want}"],
                    "next": [
                        {"step": "enough", "if": "steps.count.outputs.rows[0].n >= 1"},
                        {"step": "none", "if": "steps.count.outputs.rows[0].n == 0"},
                    ],
                },
                {"id": "enough", "type": "noop"},
                {"id": "none", "type": "noop"},
            ],
        }
    )
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED")
    assert inst["status"] == "SUCCEEDED", inst
    (fetch,) = await baton.attempts(iid, "fetch")
    assert fetch["outputs"]["status"] == 200
    assert fetch["outputs"]["body"] == {"path": "/items/42", "count": 2}
    (count,) = await baton.attempts(iid, "count")
    assert count["params"]["want"] == 2 and count["params"]["wid"] == wid
    assert count["outputs"]["rows"] == [{"n": 1, "want": 2}]
    steps = await baton.steps(iid)
    assert (steps["enough"]["status"], steps["none"]["status"]) == ("SUCCEEDED", "UNSATISFIED")


async def test_an_http_step_to_a_host_the_worker_does_not_allow_fails_with_the_reason(
    baton: Baton,
) -> None:
    wid = unique("ssrf")
    await baton.push(
        {
            "id": wid,
            "steps": [
                {
                    "id": "meta",
                    "type": "http",
                    "url": "http://169.254.169.254/latest/meta-data/",
                    "retry_policy": {"user_limit": 0},
                }
            ],
        }
    )
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "FAILED", "SUCCEEDED")
    assert inst["status"] == "FAILED"
    (attempt,) = await baton.attempts(iid, "meta")
    assert attempt["message"] == (
        "host 169.254.169.254:80 is not allowed on this worker (BATON_HTTP_ALLOWED_HOSTS)"
    )
