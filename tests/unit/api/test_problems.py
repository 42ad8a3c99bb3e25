"""The problem+json shape (RFC 9457) of input faults, built from the domain's errors."""

from __future__ import annotations

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from services.api import problems
from services.api.problems import MEDIA_TYPE, Problem, ProblemResponse, json_path
from services.domain.kernel.errors import (
    CorruptLog,
    DefinitionError,
    DomainError,
    ExpressionError,
    Rejected,
)
from services.domain.language.parse import parse_workflow_text

BAD_RETRY = """
id: wf
steps:
  - id: a
    type: noop
    retry_policy: {user_limit: 1000}
    next: [b]
  - {id: b, type: noop}
"""


def test_definition_error_becomes_a_422_listing_every_fault_with_its_path() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_workflow_text(BAD_RETRY)

    problem = problems.from_definition_error(caught.value)
    body = problem.body()

    assert problem.status == 422
    assert body["status"] == 422
    assert body["type"] == "urn:baton:problem:invalid-workflow-definition"
    assert body["title"] == "Invalid workflow definition"
    assert "1 fault" in body["detail"]
    assert body["errors"] == [
        {
            "path": "steps[0].retry_policy.user_limit",
            "message": "Input should be less than or equal to 99",
        }
    ]


def test_every_fault_is_listed_not_just_the_first() -> None:
    err = DefinitionError([("steps[0].next[0]", "unknown step 'x'"), ("steps[1].id", "dup")])

    body = problems.from_definition_error(err).body()

    assert [e["path"] for e in body["errors"]] == ["steps[0].next[0]", "steps[1].id"]
    assert "2 faults" in body["detail"]


def test_start_params_faults_are_a_problem_of_their_own_kind() -> None:
    err = DefinitionError([("params.rows", "expected a long (declared long)")])

    body = problems.from_definition_error(err, "params").body()

    assert body["type"] == "urn:baton:problem:invalid-params"
    assert body["errors"] == [{"path": "params.rows", "message": "expected a long (declared long)"}]


def test_the_response_is_problem_json_with_the_status() -> None:
    problem = problems.conflict("cannot stop an instance that is SUCCEEDED")

    response = ProblemResponse(problem)

    assert response.status_code == 409
    assert response.headers["content-type"] == MEDIA_TYPE
    assert orjson.loads(bytes(response.body)) == {
        "type": "urn:baton:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "cannot stop an instance that is SUCCEEDED",
    }


def test_a_problem_without_a_kind_is_about_blank_and_has_no_errors_member() -> None:
    body = Problem(500, "Internal Server Error", "boom").body()

    assert body == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "boom",
    }


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "steps", 3, "retry_policy", "user_limit"), "steps[3].retry_policy.user_limit"),
        (("body", "params", "rows"), "params.rows"),
        (("body", "idempotency_key"), "idempotency_key"),
        (("body",), ""),
        (("query", "limit"), "query.limit"),
        (("body", 0), "[0]"),
    ],
)
def test_request_locations_become_json_paths(loc: tuple[int | str, ...], path: str) -> None:
    assert json_path(loc) == path


async def test_an_unexpected_error_is_a_500_problem() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})

    response = await problems._on_unexpected(request, RuntimeError("secret detail"))

    assert response.status_code == 500
    assert response.headers["content-type"] == MEDIA_TYPE
    body = orjson.loads(bytes(response.body))
    assert body["title"] == "Internal Server Error"
    assert "secret" not in body["detail"]


class _Unforeseen(DomainError):
    """A domain error no entry names: answered by its nearest class, DomainError."""


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (DefinitionError([("steps[0].id", "bad id")]), 422, "invalid-request"),
        (ExpressionError("no such field 'x'"), 422, "expression-error"),
        (Rejected("the workflow has no step 'z'"), 422, "rejected"),
        (_Unforeseen("refused"), 422, "domain-error"),
        (CorruptLog("seq 9 after 7"), 500, None),
    ],
)
async def test_a_domain_error_no_route_caught_is_answered_by_its_class(
    error: DomainError, status: int, kind: str | None
) -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        response = await http.get("/boom")
    assert response.status_code == status
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    if kind is not None:
        assert body["type"] == f"urn:baton:problem:{kind}"
    if status == 500:
        assert "seq 9" not in response.text  # the log's state is the server's business
    elif isinstance(error, DefinitionError):
        assert body["errors"] == [{"path": "steps[0].id", "message": "bad id"}]
    else:
        assert body["detail"] == str(error)
