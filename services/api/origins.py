"""Writes from web pages: refused unless their origin is allowed (against cross-site request
forgery), and CORS closed unless origins are configured; requests named for another host
refused (against DNS rebinding).

A browser sends a cross-site POST without asking first (no preflight) when its content type
is `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`, and any page
can send one to a Baton on 127.0.0.1. It always names the page's origin in `Origin`, so
a write (POST, PUT, PATCH, DELETE) whose `Origin` is present and not allowed is refused with
403 before its body is read. Clients that are not browsers (the CLI, curl, other services)
send no `Origin` and are not affected.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
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


def own_hosts(host: str) -> tuple[str, ...]:
    """The names a client uses for an API bound to `host`; empty when it listens on every
    address (any name may then reach it, and none is refused)."""
    if host in ("0.0.0.0", "::", ""):
        return ()
    names = {host.lower(), f"[{host.lower()}]" if ":" in host else host.lower()}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return tuple(sorted(names))


def host_name(host_header: str) -> str:
    """`Example.com:8080` -> `example.com`, `[::1]:8080` -> `[::1]`: the name, lower case."""
    name = host_header.strip().lower()
    if name.startswith("["):
        return name.split("]", 1)[0] + "]"
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


class HostGuard:
    """ASGI middleware: 400 for a request whose `Host` is not one of `hosts` (when given).

    A page whose own name is made to resolve to 127.0.0.1 (DNS rebinding) is same-origin with
    the API in the browser's eyes, so it could read every response; its requests still name
    the page's host. Starlette's TrustedHostMiddleware does this check, but answers in plain
    text rather than problem+json."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hosts and scope["type"] in ("http", "websocket"):
            raw = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
            if host_name(raw) not in self.hosts:
                problem = Problem(
                    400,
                    "Bad Request",
                    f"this API does not serve the host {raw[:200]!r}; use one of "
                    f"{', '.join(sorted(self.hosts))}",
                    kind="host-not-allowed",
                )
                await ProblemResponse(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with a refused preflight answered as a problem (400
    `cors-not-allowed`, detail as Starlette words it: "Disallowed CORS origin", "… headers")
    rather than in plain text. Its headers are kept: they tell the browser what is allowed."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")
        }
        detail = bytes(response.body).decode()
        problem = Problem(400, "Bad Request", detail, kind="cors-not-allowed")
        return ProblemResponse(problem, headers=headers)
