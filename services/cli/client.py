"""The API client the CLI uses: JSON in and out, problems raised as `ApiError`."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import httpx


class ApiError(Exception):
    """The API answered with an error; `problem` is its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title')}: {problem.get('detail')}")
        self.status = status
        self.problem = problem


class Unreachable(Exception):
    """No answer from the API at all."""


class Client:
    def __init__(self, base_url: str, timeout: float = 35.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.base_url}/api/v1", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise Unreachable(
                f"cannot reach the Baton API at {self.base_url} ({err}); is `baton run` running?"
            ) from err
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:500]}
            raise ApiError(response.status_code, problem)
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)


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
