"""The API's workflow routes against real Kafka and PostgreSQL, in-process (no engine running):
validating and pushing definitions, and reading workflows and their versions back.

Pushes are checked by reading the published command back from the commands topic; reads
are checked against rows inserted straight into the read models.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.domain.language.fields import MAX_DEFINITION_BYTES
from services.domain.language.parse import parse_workflow_text
from services.domain.protocol.commands import PushWorkflow
from tests.integration.api_harness import (
    V1,
    Api,
    definition,
    find_command,
    insert_version,
    paths,
    problem,
    unique,
)

pytestmark = pytest.mark.integration


# -- definitions -------------------------------------------------------------------------


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"id": "bad", "steps": list(steps)}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            _steps(
                {"id": "a", "type": "noop", "next": ["b"]},
                {"id": "b", "type": "noop", "next": ["a"]},
            ),
            [("steps[0].next[0]", "cycle: a -> b -> a")],
            id="cycle",
        ),
        pytest.param(
            _steps({"id": "a", "type": "noop", "next": ["zz"]}),
            [("steps[0].next[0]", "unknown step 'zz'")],
            id="unknown-successor",
        ),
        pytest.param(
            _steps({"id": "a", "type": "noop"}, {"id": "a", "type": "noop"}),
            [("steps[1].id", "duplicate step id 'a' (first at steps[0])")],
            id="duplicate-id",
        ),
        pytest.param(
            _steps({"id": "a", "type": "bogus"}),
            [
                (
                    "steps[0].type",
                    "unknown type 'bogus'; expected one of noop, sleep, shell, python, http, sql, subworkflow, foreach, while",
                )
            ],
            id="bad-type",
        ),
        pytest.param(
            _steps({"id": "a", "type": "noop", "retry_policy": {"user_limit": 100}}),
            [("steps[0].retry_policy.user_limit", "Input should be less than or equal to 99")],
            id="user-limit-too-big",
        ),
    ],
)
async def test_invalid_definitions_are_422_with_the_path_of_every_fault(
    api: Api, document: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    for url in (f"{V1}/workflows", f"{V1}/workflows/validate"):
        response = await api.http.post(url, json=document)

        body = problem(response, 422)
        assert body["type"] == "urn:baton:problem:invalid-workflow-definition"
        assert [(e["path"], e["message"]) for e in body["errors"]] == expected


async def test_several_faults_are_reported_together(api: Api) -> None:
    document = _steps(
        {"id": "a", "type": "noop", "next": ["b"], "retry_policy": {"user_limit": 100}},
        {"id": "b", "type": "shell"},
    )

    body = problem(await api.http.post(f"{V1}/workflows/validate", json=document), 422)

    assert paths(body) == ["steps[0].retry_policy.user_limit", "steps[1].command"]


async def test_an_http_url_in_an_odd_spelling_is_422_at_its_path(api: Api) -> None:
    document = _steps({"id": "a", "type": "http", "url": "http://0x7f.1/admin"})

    body = problem(await api.http.post(f"{V1}/workflows", json=document), 422)

    [fault] = body["errors"]
    assert fault["path"] == "steps[0].url"
    assert "'0x7f.1' reads as an IPv4 address in an unusual spelling" in fault["message"]


async def test_an_oversize_definition_is_rejected(api: Api) -> None:
    text = "id: big\n# " + "x" * MAX_DEFINITION_BYTES + "\nsteps: [{id: a, type: noop}]\n"

    response = await api.http.post(
        f"{V1}/workflows", content=text, headers={"content-type": "application/yaml"}
    )

    body = problem(response, 422)
    assert paths(body) == [""]
    assert "at most" in body["errors"][0]["message"]


async def test_yaml_and_json_are_both_accepted(api: Api) -> None:
    yaml_text = "id: y\nsteps:\n  - id: a\n    type: noop\n"
    for media_type in ("application/yaml", "text/yaml"):
        response = await api.http.post(
            f"{V1}/workflows/validate", content=yaml_text, headers={"content-type": media_type}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"valid": True}
    response = await api.http.post(f"{V1}/workflows/validate", json=definition("j"))
    assert response.json() == {"valid": True}


async def test_other_media_types_are_415(api: Api) -> None:
    response = await api.http.post(
        f"{V1}/workflows/validate", content=b"id: x", headers={"content-type": "image/png"}
    )

    problem(response, 415)


async def test_a_valid_push_publishes_push_workflow(api: Api) -> None:
    workflow_id = unique("pushed")
    yaml_text = (
        f"id: {workflow_id}\nsteps:\n  - {{id: a, type: noop, next: [b]}}\n"
        "  - {id: b, type: sleep, duration: 1s}\n"
    )

    response = await api.http.post(
        f"{V1}/workflows", content=yaml_text, headers={"content-type": "application/yaml"}
    )

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["workflow_id"] == workflow_id
    env = await find_command(api, lambda e: e.command_id == accepted["command_id"])
    assert env.payload == PushWorkflow(
        workflow_id=workflow_id, definition=parse_workflow_text(yaml_text).to_json()
    )


async def test_validate_publishes_nothing_and_unknown_workflows_are_404(api: Api) -> None:
    workflow_id = unique("never_pushed")
    await api.http.post(f"{V1}/workflows/validate", json=definition(workflow_id))

    for url in (
        f"{V1}/workflows/{workflow_id}",
        f"{V1}/workflows/{workflow_id}/versions",
        f"{V1}/workflows/{workflow_id}/versions/latest",
    ):
        body = problem(await api.http.get(url), 404)
        assert workflow_id in body["detail"]


# -- workflows read side -----------------------------------------------------------------


async def test_workflows_and_versions_are_read_from_the_read_model(api: Api) -> None:
    workflow_id = await insert_version(api, definition(unique("read")))

    got = (await api.http.get(f"{V1}/workflows/{workflow_id}")).json()
    assert got["workflow_id"] == workflow_id
    assert got["latest_version"] == 1

    versions = (await api.http.get(f"{V1}/workflows/{workflow_id}/versions")).json()
    assert [v["version"] for v in versions["items"]] == [1]

    for ref in ("1", "latest"):
        version = (await api.http.get(f"{V1}/workflows/{workflow_id}/versions/{ref}")).json()
        assert version["definition"]["id"] == workflow_id
    problem(await api.http.get(f"{V1}/workflows/{workflow_id}/versions/2"), 404)
    problem(await api.http.get(f"{V1}/workflows/{workflow_id}/versions/first"), 422)

    listed = (await api.http.get(f"{V1}/workflows", params={"limit": 1000})).json()
    assert workflow_id in [w["workflow_id"] for w in listed["items"]]
    problem(await api.http.get(f"{V1}/workflows", params={"limit": 100_000}), 422)
