"""The `http` step: one request from the worker, bounded, to hosts the worker allows.

Against SSRF the worker reaches only the hosts and addresses its allow-list allows
(`BATON_HTTP_ALLOWED_HOSTS`, empty by default: every http step fails until an operator
allows its hosts; see http_allow.py), connects only to addresses it has checked, does not
follow redirects or use proxies from the environment, and reads the response body only up
to the step's `max_response_bytes`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from typing import Any

import httpx

from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import FailureKind
from services.domain.language.evaluation import fill_templates
from services.domain.language.http_urls import url_fault
from services.domain.protocol.tasks import Task
from services.worker.runtimes.contract import StepFailure, StepOutcome, StepSuccess, failure
from services.worker.runtimes.http_allow import HostAllowList, HttpRefused, Resolver

__all__ = ["HttpRuntime", "resolve"]

DEFAULT_TIMEOUT_S = 30.0
# Response headers kept in the outputs: the ones a later step plausibly reads.
_KEPT_HEADERS = ("content-type", "content-length", "etag", "last-modified", "location")


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host` (the system resolver, as a connection would use it)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


class HttpRuntime:
    """Runs http steps: the request the step's config describes, its templates filled from
    the params, sent only to addresses the allow-list allows. A refused or unreachable host,
    a status the step does not expect or an oversized response is a USER failure; no answer
    within the step's timeout (else 30 s) a TIMEOUT failure."""

    def __init__(
        self,
        allowed: HostAllowList,
        resolver: Resolver = resolve,
        trust: ssl.SSLContext | None = None,
    ) -> None:
        """`trust`: the certificate authorities https is verified with (httpx's default,
        certifi's, when None)."""
        self.allowed = allowed
        self.resolver = resolver
        self.verify: ssl.SSLContext | bool = True if trust is None else trust

    async def run(self, task: Task) -> StepOutcome:
        config = json.loads(task.config)
        filled = _filled(config, task)
        if isinstance(filled, StepFailure):
            return filled
        url = _url(filled["url"])
        if isinstance(url, StepFailure):
            return url
        default_port = 443 if url.scheme == "https" else 80
        timeout = task.timeout_seconds or DEFAULT_TIMEOUT_S
        addresses = await self._addresses(url, default_port, timeout)
        if isinstance(addresses, StepFailure):
            return addresses
        headers, content = _headers_and_content(filled, url)
        limit = int(config["max_response_bytes"])
        method = config["method"]
        try:
            # No proxies from the environment (trust_env): a proxy would resolve the name
            # again, past the address check.
            async with httpx.AsyncClient(
                follow_redirects=False, timeout=timeout, trust_env=False, verify=self.verify
            ) as client:
                response, data = await _send(
                    client, method, url, addresses, headers, content, limit
                )
        except httpx.TimeoutException:
            return failure(FailureKind.TIMEOUT, f"{method} {url}: no response in {timeout:g}s")
        except httpx.HTTPError as err:
            return failure(FailureKind.USER, f"{method} {url}: {type(err).__name__}: {err}")
        if data is None:
            return failure(FailureKind.USER, f"{method} {url}: the response is over {limit} bytes")
        return _outcome(method, url, config["expected_statuses"], response, data)

    async def _addresses(
        self, url: httpx.URL, default_port: int, timeout: float
    ) -> list[str] | StepFailure:
        """The addresses of the url's host the allow-list lets the step reach (never empty),
        or why there are none."""
        try:
            async with asyncio.timeout(timeout):
                return await self.allowed.addresses(
                    url.host, url.port or default_port, default_port, self.resolver
                )
        except HttpRefused as err:
            return failure(FailureKind.USER, str(err))
        except OSError as err:  # socket.gaierror: no such name, or no resolver
            return failure(FailureKind.USER, f"host {url.host}: cannot resolve it: {err}")
        except TimeoutError:
            return failure(FailureKind.TIMEOUT, f"host {url.host}: not resolved in {timeout:g}s")


def _filled(config: dict[str, Any], task: Task) -> dict[str, Any] | StepFailure:
    """The url, headers and body with their templates filled from the task's params."""
    try:
        filled: dict[str, Any] = fill_templates(
            {"url": config["url"], "headers": config["headers"], "body": config["body"]},
            json.loads(task.params),
        )
    except ExpressionError as err:
        return failure(FailureKind.USER, f"http step: {err}")
    return filled


def _url(value: Any) -> httpx.URL | StepFailure:
    """The filled url, or a USER failure when it is not one a step may request."""
    fault = url_fault(value) if isinstance(value, str) else "not a string"
    if fault:
        return failure(FailureKind.USER, f"invalid url {value!r}: {fault}")
    try:
        return httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as err:
        return failure(FailureKind.USER, f"invalid url {value!r}: {err}")


def _headers_and_content(
    filled: dict[str, Any], url: httpx.URL
) -> tuple[dict[str, str], bytes | None]:
    """The request's headers and body: a string body as it is, any other value as JSON."""
    body = filled["body"]
    content: bytes | None = None
    # The Host header is the url's: a step's own would reach another site on the address.
    headers = {k: v for k, v in dict(filled["headers"]).items() if k.lower() != "host"}
    headers["host"] = url.netloc.decode("ascii")
    if isinstance(body, str):
        content = body.encode()
    elif body is not None:
        content = json.dumps(body, separators=(",", ":")).encode()
        headers.setdefault("content-type", "application/json")
    return headers, content


def _outcome(
    method: str, url: httpx.URL, expected: list[int], response: httpx.Response, data: bytes
) -> StepOutcome:
    """Success for an expected status (any 2xx when the step names none), with the status,
    the kept headers and the body as outputs; a USER failure for any other status."""
    text = data.decode("utf-8", errors="replace")
    ok = response.status_code in expected if expected else 200 <= response.status_code < 300
    if not ok:
        want = ", ".join(map(str, expected)) if expected else "2xx"
        return failure(
            FailureKind.USER,
            f"{method} {url}: HTTP {response.status_code} (expected {want})",
            text,
        )
    return StepSuccess(
        {
            "status": response.status_code,
            "headers": {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers},
            "body": _body(text, response.headers.get("content-type", "")),
        }
    )


async def _send(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    addresses: list[str],
    headers: dict[str, str],
    content: bytes | None,
    limit: int,
) -> tuple[httpx.Response, bytes | None]:
    """The request to the first of the checked `addresses` that accepts a connection.

    The url's host is replaced by the address, so the connection goes where the check said
    (resolving the name again could answer another address: DNS rebinding); the Host header
    and, for https, the TLS server name (httpcore's `sni_hostname` extension, which the
    certificate is verified against) stay the url's host."""
    error: httpx.ConnectError | None = None
    for address in addresses:
        request = client.build_request(
            method,
            url.copy_with(host=address),
            headers=headers,
            content=content,
            extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as err:
            error = err
            continue
        try:
            return response, await _read_at_most(response, limit)
        finally:
            await response.aclose()
    assert error is not None  # addresses is never empty
    raise error


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
