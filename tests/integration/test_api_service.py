"""The API's service routes in-process: health, the schema registry, unknown routes and the
OpenAPI document.
"""

from __future__ import annotations

import pytest

from tests.integration.api_harness import V1, Api, paths, problem

pytestmark = pytest.mark.integration


async def test_health_without_the_processes_is_503_naming_each(api: Api) -> None:
    # Only the API runs here (in-process): the database and Kafka answer, but no engine,
    # worker or projector is in its group. /health says so, rather than "ok".
    for url in ("/health", f"{V1}/health"):
        body = problem(await api.http.get(url), 503)
        assert body["type"] == "urn:baton:problem:unhealthy"
        assert paths(body) == ["processes.engine", "processes.worker", "processes.projector"]
        report = body["health"]
        assert (report["status"], report["database"], report["kafka"]) == (
            "degraded",
            "ok",
            "ok",
        )
        assert report["producer"] == "ok"
        assert report["projection"]["lag"] == sum(report["projection"]["partitions"].values())


async def test_registry_serves_the_schemas_in_confluent_shapes(api: Api) -> None:
    subjects = (await api.http.get("/registry/subjects")).json()
    assert subjects
    subject = subjects[0]
    versions = (await api.http.get(f"/registry/subjects/{subject}/versions")).json()
    assert versions
    latest = (await api.http.get(f"/registry/subjects/{subject}/versions/latest")).json()
    assert latest["subject"] == subject
    assert latest["version"] == max(versions)
    by_id = (await api.http.get(f"/registry/schemas/ids/{latest['id']}")).json()
    assert by_id == {"schema": latest["schema"]}

    body = problem(await api.http.get("/registry/subjects/nope/versions"), 404)
    assert body["error_code"] == 40401
    problem(await api.http.get("/registry/schemas/ids/1"), 404)


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    problem(await api.http.get(f"{V1}/nothing-here"), 404)
    problem(await api.http.delete(f"{V1}/workflows"), 405)


async def test_openapi_lists_every_route(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()

    expected = {
        f"{V1}/workflows": {"get", "post"},
        f"{V1}/workflows/validate": {"post"},
        f"{V1}/workflows/{{workflow_id}}": {"get"},
        f"{V1}/workflows/{{workflow_id}}/versions": {"get"},
        f"{V1}/workflows/{{workflow_id}}/versions/{{version}}": {"get"},
        f"{V1}/workflows/{{workflow_id}}/instances": {"post"},
        f"{V1}/workflows/{{workflow_id}}/breakpoints/{{step_id}}": {"put", "delete"},
        f"{V1}/instances": {"get"},
        f"{V1}/instances/{{instance_id}}": {"get"},
        f"{V1}/instances/{{instance_id}}/steps": {"get"},
        f"{V1}/instances/{{instance_id}}/steps/{{step_id}}/attempts": {"get"},
        f"{V1}/instances/{{instance_id}}/attempts": {"get"},
        f"{V1}/instances/{{instance_id}}/events": {"get"},
        f"{V1}/instances/{{instance_id}}/actions/stop": {"post"},
        f"{V1}/instances/{{instance_id}}/actions/kill": {"post"},
        f"{V1}/instances/{{instance_id}}/actions/restart": {"post"},
        f"{V1}/health": {"get"},
        "/health": {"get"},
        "/registry/subjects": {"get"},
        "/registry/subjects/{subject}/versions": {"get"},
        "/registry/subjects/{subject}/versions/{version}": {"get"},
        "/registry/schemas/ids/{schema_id}": {"get"},
    }
    for path, methods in expected.items():
        assert path in spec["paths"], path
        assert methods <= spec["paths"][path].keys(), path
    create = spec["paths"][f"{V1}/workflows"]["post"]
    assert {"application/json", "application/yaml"} <= create["requestBody"]["content"].keys()
