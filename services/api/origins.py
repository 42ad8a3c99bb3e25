"""Writes from web pages: refused unless their origin is allowed (against cross-site request
forgery), and CORS closed unless origins are configured.

A browser sends a cross-site POST without asking first (no preflight) when its content type
is `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`, and any page
can send one to a Baton on 127.0.0.1. It always names the page's origin in `Origin`, so
a write (POST, PUT, PATCH, DELETE) whose `Origin` is present and not allowed is refused with
403 before its body is read. Clients that are not browsers (the CLI, curl, other services)
send no `Origin` and are not affected.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.problems import Problem, ProblemResponse

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def normalise_origin(origin: str) -> str:
    """`HTTP://Example.com:8080/` -> `http://example.com:8080`: how origins compare."""
    return origin.strip().rstrip("/").lower()


def own_origins(host: str, port: int) -> tuple[str, ...]:
    """The origins of pages the API itself serves (its docs, a UI) at `host:port`."""
    names = {"127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost", "0.0.0.0") else set()
    if host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host else host)
    return tuple(sorted(f"http://{name}:{port}" for name in names))


class OriginGuard:
    """ASGI middleware: 403 for a write whose `Origin` header is not in `allowed`."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(normalise_origin(o) for o in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            origins = [v for k, v in scope["headers"] if k == b"origin"]
            if origins:
                origin = origins[0].decode("latin-1")
                if len(origins) > 1 or normalise_origin(origin) not in self.allowed:
                    problem = Problem(
                        403,
                        "Forbidden",
                        f"writes from the web origin {origin[:200]!r} are not allowed; "
                        "an operator can allow it with BATON_API_ALLOWED_ORIGINS",
                        kind="origin-not-allowed",
                    )
                    await ProblemResponse(problem)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
