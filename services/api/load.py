"""Shedding load early: a bound on the requests the API serves at once.

Beyond `max_requests` requests in progress in the app, this middleware answers 503
problem+json `overloaded` with Retry-After at once, before reading the body or touching the
database or Kafka, so the requests it serves are not slowed by more piling up, and a client
learns at once to retry (the CLI does, politely). Health probes are never shed: an operator
must see an overloaded API. It bounds only what reaches the app: requests waiting for the
event loop to accept and parse them are not counted (2,000 concurrent starts on a 2-core
machine, measured against `baton run`, never had 256 in the app at once).

Hand-written: Starlette has no concurrency limit, and uvicorn's `--limit-concurrency` answers
a bare 503 without problem+json or Retry-After (and counts WebSockets and health alike).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.problems import Problem, ProblemResponse

MAX_REQUESTS = 256
RETRY_AFTER_S = 1
_NEVER_SHED = frozenset({"/health", "/api/v1/health"})


@dataclass
class Load:
    """The API's load, as the middleware counts it (the app keeps it in `app.state.load`)."""

    max_requests: int = MAX_REQUESTS
    in_progress: int = 0
    shed: int = 0  # requests answered `overloaded`, since the start


class RequestLimit:
    """ASGI middleware: at most `load.max_requests` HTTP requests in progress (see the
    module)."""

    def __init__(self, app: ASGIApp, load: Load) -> None:
        self.app = app
        self.load = load

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        load = self.load
        if scope["type"] != "http" or scope["path"] in _NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if load.in_progress >= load.max_requests:
            load.shed += 1
            problem = Problem(
                503,
                "Service Unavailable",
                f"the API is serving {load.in_progress} requests already; retry shortly",
                kind="overloaded",
            )
            response = ProblemResponse(problem, headers={"Retry-After": str(RETRY_AFTER_S)})
            await response(scope, receive, send)
            return
        load.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            load.in_progress -= 1
