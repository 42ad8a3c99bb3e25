"""RFC 9457 problem details: the one shape of every error response.

Every error leaves the API as ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; input faults add ``errors``, a list of ``{"path", "message"}``
where ``path`` is the JSON path of the value at fault in the request
(``steps[3].retry_policy.user_limit``, ``params.rows``; query parameters as
``query.limit``). Routes raise `Problem`; `install` maps FastAPI's own errors (request
validation, unknown routes, wrong methods, unexpected exceptions) and the database's data
errors onto the same shape, and answers OPTIONS with the methods of the path
(services/api/openapi.py makes the document declare every error response as a problem).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from services.adapters import postgres
from services.domain.kernel.errors import (
    CorruptLog,
    DefinitionError,
    DomainError,
    ExpressionError,
    Rejected,
)

_log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:baton:problem:"

log = logging.getLogger(__name__)

_PROBED_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH")

# The request parts FastAPI names first in an error location; the body's is dropped
# because users think of paths inside the document they sent.
_LOCATION_PARTS = frozenset({"query", "path", "header", "cookie"})


class Problem(Exception):
    """An error response: raise it from a route; `install` renders it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str | None = None,
        errors: Sequence[tuple[str, str]] | None = None,
        extra: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = f"{TYPE_PREFIX}{kind}" if kind else "about:blank"
        self.errors = list(errors) if errors is not None else None
        self.extra = dict(extra or {})
        self.retry_after = retry_after  # seconds, sent as Retry-After

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            out["errors"] = [{"path": p, "message": m} for p, m in self.errors]
        out.update(self.extra)
        return out


class ProblemResponse(Response):
    media_type = MEDIA_TYPE

    def __init__(self, problem: Problem, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(orjson.dumps(problem.body()), status_code=problem.status, headers=headers)


def not_found(what: str) -> Problem:
    return Problem(404, "Not Found", f"{what} does not exist", kind="not-found")


def conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail, kind="conflict")


def invalid_input(faults: Iterable[tuple[str, str]], what: str = "request") -> Problem:
    faults = list(faults)
    noun = "fault" if len(faults) == 1 else "faults"
    return Problem(
        422,
        f"Invalid {what}",
        f"{len(faults)} {noun} in the {what}; see errors",
        kind=f"invalid-{what.replace(' ', '-')}",
        errors=faults,
    )


def from_definition_error(err: DefinitionError, what: str = "workflow definition") -> Problem:
    """422 listing every fault of a definition (or of start params) with its path."""
    return invalid_input(err.faults, what)


def json_path(loc: Sequence[int | str]) -> str:
    """`("body", "steps", 3, "id")` -> `steps[3].id`; query/path parameters keep their part."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def from_request_validation(err: RequestValidationError) -> Problem:
    faults: list[tuple[str, str]] = []
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "missing" and loc == ("body",):
            msg = "a JSON body is required"
        faults.append((json_path(loc), msg))
    return invalid_input(faults)


_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def title_for(status: int) -> str:
    return _TITLES.get(status, "Error")


async def _on_problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return ProblemResponse(exc, headers=headers)


async def _on_validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return ProblemResponse(from_request_validation(exc))


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route answers at the request's path, and OPTIONS. (Starlette's 405
    names only the methods of the first route that matched the path, and FastAPI has a
    route per method.) Each method is probed through the routes' public `matches`."""
    methods = {"OPTIONS"}
    for method in _PROBED_METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            methods.add(method)
    return sorted(methods)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request.app.router.routes, request.scope))
        headers["Allow"] = allow
        if request.method == "OPTIONS":  # RFC 9110 §9.3.7: the methods of the resource
            return Response(status_code=204, headers=headers)
    detail = exc.detail if isinstance(exc.detail, str) else title_for(exc.status_code)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    problem = Problem(exc.status_code, title_for(exc.status_code), detail)
    return ProblemResponse(problem, headers=headers)


async def on_data_error(request: Request, exc: Exception) -> Response:
    """A value the database cannot hold or compare (SQLSTATE class 22: a NUL in text, a
    number past its column) is the request's fault — the API's queries are fixed, their
    values come from the request — so a 422, not a 500. Declared constraints catch these
    before any query (services/api/inputs.py); this is the net under them. The value is
    neither echoed nor logged: it may be anything."""
    assert isinstance(exc, asyncpg.DataError)
    log.warning(
        "%s %s: a request value reached the database and was refused (%s, SQLSTATE %s)",
        request.method,
        request.url.path,
        type(exc).__name__,
        getattr(exc, "sqlstate", None),
    )
    return ProblemResponse(
        invalid_input([("", "a value in the request cannot be stored or compared by the database")])
    )


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    """A domain error no route caught (a route that knows which document or field catches
    its own and says so): answered by its class, the nearest in `DOMAIN_PROBLEMS`."""
    assert isinstance(exc, DomainError)
    if isinstance(exc, DefinitionError):
        return ProblemResponse(invalid_input(exc.faults))
    for cls, (status, title) in DOMAIN_PROBLEMS:
        if isinstance(exc, cls):
            if status >= 500:
                return await _on_unexpected_logged(request, exc)
            return ProblemResponse(Problem(status, title, str(exc), kind=_kind(cls)))
    return await _on_unexpected_logged(request, exc)


def _kind(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


# The domain's errors, by class, as HTTP answers (nearest class first). The domain knows no
# HTTP (as Maestro's exceptions carry their code, here the API's table does); a corrupt log is
# the server's fault and says nothing to the caller.
DOMAIN_PROBLEMS: tuple[tuple[type[DomainError], tuple[int, str]], ...] = (
    (ExpressionError, (422, "Invalid expression")),
    (Rejected, (422, "Rejected")),
    (CorruptLog, (500, "Internal Server Error")),
    (DomainError, (422, "Refused by the domain")),
)


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so the server logs it once.
    problem = Problem(500, "Internal Server Error", "an unexpected error occurred; see the API log")
    return ProblemResponse(problem)


# A retry after this many seconds has a fair chance: PostgreSQL restarts take a few.
UNAVAILABLE_RETRY_AFTER_S = 2


async def _on_database_error(request: Request, exc: Exception) -> Response:
    # Handled here rather than by the catch-all, which Starlette follows by re-raising (and
    # so logging a traceback per request, a flood while the database is away).
    if not postgres.is_unavailable(exc):
        return await _on_unexpected_logged(request, exc)
    problem = Problem(
        503,
        "Service Unavailable",
        "the database is unavailable; retry shortly",
        kind="database-unavailable",
    )
    return ProblemResponse(problem, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})


async def _on_unexpected_logged(request: Request, exc: Exception) -> Response:
    _log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return await _on_unexpected(request, exc)


def install(app: FastAPI) -> None:
    """Route every error of `app` through problem+json."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(asyncpg.DataError, on_data_error)
    for unavailable in (*postgres.UNAVAILABLE_ERRORS, asyncpg.exceptions.InterfaceError):
        app.add_exception_handler(unavailable, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)


# The response documented in OpenAPI for every error status.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": "urn:baton:problem:invalid-workflow-definition"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each status answered with a problem."""
    return {s: problem_response(s) for s in statuses}


def problem_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of an error status: a problem."""
    return {"description": title_for(status), "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}
