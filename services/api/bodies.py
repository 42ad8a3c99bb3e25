"""JSON request bodies, bounded before any route parses or walks them.

FastAPI reads a JSON body whole and decodes it with `json.loads`: without this, a body of
any size is held in memory, one nested deeper than Python's recursion limit (about 1,000)
fails as a plain 400, and one nested a few hundred levels is accepted and published — a
signal payload 900 deep reached the log, where every later reader (`json.dumps` in the API,
the engine's fold, PostgreSQL's jsonb) may hit its own recursion limit. So every JSON body
of a write is read here up to `MAX_JSON_BODY_BYTES` (413 beyond) and checked by
`documents.check_shape` (at most 64 levels, 100,000 values: 422 with the path) and for NUL
characters in its strings and keys (422 at each path: what a body carries reaches PostgreSQL
through the log, the projector writes it as text or jsonb, and neither can hold one — the
projector would stop at that event), then handed on unchanged. The NUL walk runs only when a
scan of the bytes finds a NUL could be there (`body_rules.may_hold_nul`): walking every body
took 39 ms of a request of 85 ms for one of 99,000 values. Malformed JSON is answered here
too (422 with the decoder's message), so no JSON body reaches FastAPI's own decoder
undecided: that one runs a few frames deeper, and a malformed body nested about 960 deep
passed this parse as a syntax error and failed there as a RecursionError. Definitions (`POST
/workflows`, `/workflows/validate`) have their own bounded path, off the event loop
(routes/workflows.py), and are skipped.

FastAPI then decodes the body again. Handing the parsed value on would take a custom
`APIRoute` and `Request` on every router, and saves little: measured on a 1 MB body,
`json.loads` takes 0.4 ms (one string) to 2.6 ms (99,000 integers, 297 KB) of a request of
3 to 85 ms in-process, where the shape walk and pydantic take the rest. Not worth it.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import problems
from services.api.body_rules import NUL_MESSAGE, may_hold_nul, nul_paths
from services.api.origins import WRITE_METHODS
from services.api.problems import Problem, ProblemResponse
from services.domain.kernel.documents import load_json, render_path
from services.domain.kernel.errors import DefinitionError

# Far above any body Baton accepts (start params are bounded per value, a signal's payload at
# 64 KiB), and small enough to hold.
MAX_JSON_BODY_BYTES = 1_000_000


def _is_json(content_type: str) -> bool:
    # What FastAPI decodes as JSON: application/json, application/*+json.
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JsonBodyGuard:
    """ASGI middleware: 413 or 422 for a write's JSON body out of bounds; `skip` lists the
    paths that read their body themselves."""

    def __init__(self, app: ASGIApp, skip: Collection[str]) -> None:
        self.app = app
        self.skip = frozenset(skip)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or scope["path"] in self.skip
        ):
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        if content_type and not _is_json(content_type.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive, MAX_JSON_BODY_BYTES)
        problem = _too_large() if more else _fault(body)
        if problem is not None:
            await ProblemResponse(problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body, up to one chunk past `limit`; and whether more was left unread."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return bytes(body), False
        body += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more or len(body) > limit:
            return bytes(body), more or len(body) > limit


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # a disconnect, when it comes

    return replayed


def _too_large() -> Problem:
    return Problem(
        413,
        "Content Too Large",
        f"a JSON body may be at most {MAX_JSON_BODY_BYTES} bytes",
        kind="content-too-large",
    )


def _fault(body: bytes) -> Problem | None:
    if not body:  # no body: the route decides whether it needs one
        return None
    try:
        data = load_json(body)
    except DefinitionError as err:
        return problems.invalid_input(err.faults)
    except UnicodeDecodeError:
        return problems.invalid_input([("", "the body is not valid JSON: it is not UTF-8 text")])
    except json.JSONDecodeError as err:
        message = f"the body is not valid JSON: {err.msg} (at character {err.pos})"
        return problems.invalid_input([("", message)])
    except ValueError:  # valid JSON that json.loads still refuses (the domain bounds numbers)
        return problems.invalid_input([("", "the body could not be read as JSON")])
    if may_hold_nul(body):
        faults = [(render_path(loc), NUL_MESSAGE) for loc in nul_paths(data)]
        if faults:
            return problems.invalid_input(faults)
    return None
