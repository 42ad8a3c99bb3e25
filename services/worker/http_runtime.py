"""The `http` step: one request from the worker, bounded, to hosts the worker allows.

Against SSRF the worker reaches only the hosts in its allow-list (`BATON_HTTP_ALLOWED_HOSTS`,
empty by default: every http step fails until an operator allows its hosts), redirects are
not followed, and the response body is read only up to the step's `max_response_bytes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from services.domain.evaluation import fill_templates
from services.domain.expressions import ExpressionError
from services.domain.statuses import FailureKind
from services.domain.tasks import Task
from services.worker.runtimes import StepOutcome, StepSuccess, failure

DEFAULT_TIMEOUT_S = 30.0
# Response headers kept in the outputs: the ones a later step plausibly reads.
_KEPT_HEADERS = ("content-type", "content-length", "etag", "last-modified", "location")


class HostAllowList:
    """`host`, `host:port` or `*.domain` entries; a host matches case-insensitively."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(e.strip().lower() for e in entries if e.strip())

    @classmethod
    def from_env(cls, value: str | None) -> HostAllowList:
        return cls((value or "").split(","))

    def allows(self, host: str, port: int) -> bool:
        host = host.lower()
        for entry in self.entries:
            name, _, want_port = entry.partition(":")
            if want_port and want_port != str(port):
                continue
            if name == host or (name.startswith("*.") and host.endswith(name[1:])):
                return True
        return False


class HttpRuntime:
    def __init__(self, allowed: HostAllowList) -> None:
        self.allowed = allowed

    async def run(self, task: Task) -> StepOutcome:
        config = json.loads(task.config)
        try:
            filled = fill_templates(
                {"url": config["url"], "headers": config["headers"], "body": config["body"]},
                json.loads(task.params),
            )
        except ExpressionError as err:
            return failure(FailureKind.USER, f"http step: {err}")
        try:
            url = httpx.URL(filled["url"])
        except (httpx.InvalidURL, TypeError) as err:
            return failure(FailureKind.USER, f"invalid url {filled['url']!r}: {err}")
        if url.scheme not in ("http", "https") or not url.host:
            return failure(FailureKind.USER, f"the url must be http(s)://host/..., not {url}")
        port = url.port or (443 if url.scheme == "https" else 80)
        if not self.allowed.allows(url.host, port):
            return failure(
                FailureKind.USER,
                f"host {url.host}:{port} is not allowed on this worker (BATON_HTTP_ALLOWED_HOSTS)",
            )
        body = filled["body"]
        content: bytes | None = None
        headers = dict(filled["headers"])
        if isinstance(body, str):
            content = body.encode()
        elif body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            headers.setdefault("content-type", "application/json")
        timeout = task.timeout_seconds or DEFAULT_TIMEOUT_S
        limit = int(config["max_response_bytes"])
        try:
            async with httpx.AsyncClient(follow_redirects=False, timeout=timeout) as client:
                request = client.build_request(
                    config["method"], url, headers=headers, content=content
                )
                response = await client.send(request, stream=True)
                try:
                    data = await _read_at_most(response, limit)
                finally:
                    await response.aclose()
        except httpx.TimeoutException:
            return failure(
                FailureKind.TIMEOUT, f"{config['method']} {url}: no response in {timeout:g}s"
            )
        except httpx.HTTPError as err:
            return failure(
                FailureKind.USER, f"{config['method']} {url}: {type(err).__name__}: {err}"
            )
        if data is None:
            return failure(
                FailureKind.USER, f"{config['method']} {url}: the response is over {limit} bytes"
            )
        text = data.decode("utf-8", errors="replace")
        expected = config["expected_statuses"]
        ok = response.status_code in expected if expected else 200 <= response.status_code < 300
        if not ok:
            want = ", ".join(map(str, expected)) if expected else "2xx"
            return failure(
                FailureKind.USER,
                f"{config['method']} {url}: HTTP {response.status_code} (expected {want})",
                text,
            )
        return StepSuccess(
            {
                "status": response.status_code,
                "headers": {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers},
                "body": _body(text, response.headers.get("content-type", "")),
            }
        )


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` bytes (read no further than that)."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


def _body(text: str, content_type: str) -> Any:
    """JSON responses as values, anything else as text."""
    if "json" in content_type.lower():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
