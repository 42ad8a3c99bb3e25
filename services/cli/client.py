"""The API client the CLI uses: JSON in and out, problems raised as `ApiError`."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import httpx

# Answers that say nothing was done and a retry after Retry-After seconds has a fair chance:
# the CLI retries these, politely. Not publish-timeout or publish-failed: such a command may
# still be applied, and a start retried without its idempotency key would start twice.
RETRYABLE = frozenset(
    f"urn:baton:problem:{kind}"
    for kind in ("overloaded", "kafka-unavailable", "database-unavailable", "validation-busy")
)
RETRIES = 3
MAX_RETRY_AFTER_S = 10.0


class ApiError(Exception):
    """The API answered with an error; `problem` is its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title')}: {problem.get('detail')}")
        self.status = status
        self.problem = problem


class Unreachable(Exception):
    """No answer from the API at all."""


class Client:
    def __init__(
        self,
        base_url: str,
        timeout: float = 35.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.base_url}/api/v1", timeout=timeout, transport=transport
        )
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        # Hand-written rather than a retry library: the one rule is "wait what the API said
        # (Retry-After), a few times, for the answers that say nothing was done".
        for attempt in range(RETRIES + 1):
            response = self._send(method, path, **kwargs)
            wait = _retry_after(response)
            if wait is None or attempt == RETRIES:
                break
            kind = response.json().get("type", "").rsplit(":", 1)[-1]
            print(f"the API is busy ({kind}); retrying in {wait:g} s", file=sys.stderr)
            self._sleep(wait)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:500]}
            raise ApiError(response.status_code, problem)
        return response.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise Unreachable(
                f"cannot reach the Baton API at {self.base_url} ({err}); is `baton run` running?"
            ) from err

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before a retry, when the answer is one to retry (RETRYABLE)."""
    if response.status_code not in (429, 503):
        return None
    try:
        kind = response.json().get("type")
        wait = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    if kind not in RETRYABLE or not math.isfinite(wait) or wait < 0:
        return None
    return min(wait, MAX_RETRY_AFTER_S)


def print_problem(err: ApiError, prefix: str = "", out: TextIO = sys.stderr) -> None:
    """`prefix: Title: detail` and one indented line per fault, path first."""
    problem = err.problem
    head = f"{problem.get('title', 'Error')} ({err.status})"
    errors = problem.get("errors") or []
    detail = problem.get("detail", "")
    if errors:
        print(f"{prefix}{head}", file=out)
        for fault in errors:
            print(f"  {fault.get('path') or '(document)'}: {fault.get('message')}", file=out)
    else:
        print(f"{prefix}{head}: {detail}", file=out)
