"""The query/command API against real Kafka and PostgreSQL, in-process (no engine running).

Writes are checked by reading the published command back from the commands topic; reads
are checked against rows inserted straight into the read models.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from services.adapters.avro import Codec
from services.adapters.kafka import TOPIC_COMMANDS, ensure_topics, new_consumer, new_producer
from services.adapters.postgres import apply_migrations, connect_pool
from services.adapters.schema_registry import register_schemas
from services.adapters.settings import Settings
from services.api.app import create_app
from services.api.deps import ApiDeps
from services.api.problems import MEDIA_TYPE
from services.domain.commands import (
    CommandEnvelope,
    PushWorkflow,
    StartInstance,
    StopInstance,
)
from services.domain.definition import MAX_DEFINITION_BYTES, parse_workflow_text
from tests.helpers import own_database, wait_until_async

pytestmark = pytest.mark.integration

V1 = "/api/v1"


@dataclass
class Api:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    codec: Codec
    bootstrap: str


@pytest.fixture(scope="module")
async def api(kafka: str, postgres: str, settings: Settings) -> AsyncIterator[Api]:
    # Its own database: these tests write read-model rows directly.
    url = await asyncio.to_thread(own_database, postgres, "baton_api_test")
    await ensure_topics(kafka, settings.partitions)
    pool = await connect_pool(url)
    producer = new_producer(kafka)
    codec = Codec()
    try:
        await apply_migrations(pool)
        await register_schemas(pool, codec)
        await producer.start()
        app = create_app(ApiDeps(pool=pool, producer=producer, codec=codec))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            yield Api(http, pool, codec, kafka)
    finally:
        await producer.stop()
        await pool.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def definition(workflow_id: str, **params: Any) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "params": params,
        "steps": [
            {"id": "a", "type": "noop", "next": ["b"]},
            {"id": "b", "type": "shell", "command": "echo hi"},
        ],
    }


async def find_command(
    api: Api, match: Callable[[CommandEnvelope], bool], timeout: float = 30.0
) -> CommandEnvelope:
    """The first command on the commands topic (read_committed, from the start) that matches."""
    consumer = new_consumer(api.bootstrap, None, TOPIC_COMMANDS)
    await consumer.start()
    found: list[CommandEnvelope] = []

    async def poll() -> bool:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            found.extend(env for r in records if match(env := api.codec.decode_command(r.value)))
        return bool(found)

    try:
        await wait_until_async(poll, timeout=timeout, interval=0, message="command published")
    finally:
        await consumer.stop()
    return found[0]


async def insert_version(api: Api, definition_obj: dict[str, Any]) -> str:
    """A workflow and its version 1 in the read models, as the projector would write them."""
    wf = parse_workflow_text(json.dumps(definition_obj))
    now = datetime.now(UTC)
    async with api.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO workflows (workflow_id, latest_version, created_at, updated_at)"
            " VALUES ($1, 1, $2, $2)",
            wf.id,
            now,
        )
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, definition, created_at)"
            " VALUES ($1, 1, $2::jsonb, $3)",
            wf.id,
            wf.to_json(),
            now,
        )
    return wf.id


async def insert_instance(api: Api, workflow_id: str, status: str) -> str:
    instance_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    await api.pool.execute(
        "INSERT INTO instances (instance_id, workflow_id, version, run, status, initiator,"
        " params, created_at, updated_at, last_seq) VALUES ($1, $2, 1, 1, $3, 'test', '{}',"
        " $4, $4, 1)",
        instance_id,
        workflow_id,
        status,
        now,
    )
    return instance_id


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def paths(body: dict[str, Any]) -> list[str]:
    return [e["path"] for e in body["errors"]]


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
            [("steps[0].type", "unknown type 'bogus'; expected one of noop, sleep, shell, python")],
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
    for media_type in ("application/yaml", "text/yaml", "text/plain"):
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


# -- starting instances ------------------------------------------------------------------


async def test_start_publishes_start_instance_with_the_stored_definition(api: Api) -> None:
    workflow_id = await insert_version(api, definition(unique("start"), rows=5))

    response = await api.http.post(
        f"{V1}/workflows/{workflow_id}/instances", json={"params": {"rows": 7}}
    )

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["version"] == 1
    env = await find_command(api, lambda e: e.command_id == accepted["command_id"])
    stored = await api.pool.fetchval(
        "SELECT definition::text FROM workflow_versions WHERE workflow_id = $1", workflow_id
    )
    canonical = json.dumps(json.loads(stored), sort_keys=True, separators=(",", ":"))
    assert env.payload == StartInstance(
        instance_id=accepted["instance_id"],
        workflow_id=workflow_id,
        version=1,
        definition=canonical,
        params='{"rows":7}',
        initiator="api",
        idempotency_key=None,
    )


async def test_start_with_bad_params_is_422_with_the_param_path(api: Api) -> None:
    workflow_id = await insert_version(api, definition(unique("params"), rows=5))

    response = await api.http.post(
        f"{V1}/workflows/{workflow_id}/instances", json={"params": {"rows": "many"}}
    )

    body = problem(response, 422)
    assert paths(body) == ["params.rows"]


async def test_start_request_faults_are_422_with_their_paths(api: Api) -> None:
    workflow_id = await insert_version(api, definition(unique("body")))

    response = await api.http.post(
        f"{V1}/workflows/{workflow_id}/instances",
        json={"idempotency_key": "k" * 257, "colour": "red", "version": "newest"},
    )

    body = problem(response, 422)
    assert sorted(paths(body)) == ["colour", "idempotency_key", "version"]


async def test_start_of_an_unknown_workflow_or_version_is_404(api: Api) -> None:
    body = problem(await api.http.post(f"{V1}/workflows/{unique('nope')}/instances", json={}), 404)
    assert body["type"] == "urn:baton:problem:not-found"

    workflow_id = await insert_version(api, definition(unique("v1only")))
    body = problem(
        await api.http.post(f"{V1}/workflows/{workflow_id}/instances", json={"version": 9}), 404
    )
    assert "version 9" in body["detail"]


async def test_the_same_idempotency_key_names_the_same_instance(api: Api) -> None:
    workflow_id = await insert_version(api, definition(unique("idem")))
    url = f"{V1}/workflows/{workflow_id}/instances"

    first = (await api.http.post(url, json={"idempotency_key": "order-42"})).json()
    second = (await api.http.post(url, json={"idempotency_key": "order-42"})).json()
    other = (await api.http.post(url, json={"idempotency_key": "order-43"})).json()
    unkeyed = (await api.http.post(url)).json()

    assert first["instance_id"] == second["instance_id"]
    assert first["command_id"] != second["command_id"]
    assert other["instance_id"] != first["instance_id"]
    assert unkeyed["instance_id"] not in (first["instance_id"], other["instance_id"])


# -- instances ---------------------------------------------------------------------------


async def test_actions_are_checked_against_the_current_status(api: Api) -> None:
    workflow_id = unique("actions")
    done = await insert_instance(api, workflow_id, "SUCCEEDED")
    running = await insert_instance(api, workflow_id, "IN_PROGRESS")

    body = problem(await api.http.post(f"{V1}/instances/{done}/actions/stop"), 409)
    assert body["detail"] == "cannot stop an instance that is SUCCEEDED"
    problem(await api.http.post(f"{V1}/instances/{done}/actions/kill"), 409)
    body = problem(await api.http.post(f"{V1}/instances/{running}/actions/restart"), 409)
    assert body["detail"] == "cannot restart an instance that is IN_PROGRESS"
    problem(await api.http.post(f"{V1}/instances/{uuid.uuid4().hex}/actions/stop"), 404)

    response = await api.http.post(
        f"{V1}/instances/{running}/actions/stop", json={"reason": "enough"}
    )
    assert response.status_code == 202, response.text
    env = await find_command(api, lambda e: e.command_id == response.json()["command_id"])
    assert env.payload == StopInstance(instance_id=running, reason="enough")

    response = await api.http.post(
        f"{V1}/instances/{done}/actions/restart", json={"mode": "FROM_BEGINNING"}
    )
    assert response.status_code == 202, response.text


async def test_instance_reads(api: Api) -> None:
    workflow_id = unique("reads")
    instance_id = await insert_instance(api, workflow_id, "IN_PROGRESS")
    now = datetime.now(UTC)
    await api.pool.execute(
        "INSERT INTO steps (instance_id, step_id, position, step_type, status, attempt, run,"
        " updated_at) VALUES ($1, 'a', 0, 'noop', 'SUCCEEDED', 1, 1, $2),"
        " ($1, 'b', 1, 'shell', 'RUNNING', 1, 1, $2)",
        instance_id,
        now,
    )

    got = (await api.http.get(f"{V1}/instances/{instance_id}")).json()
    assert got["status"] == "IN_PROGRESS"
    assert got["step_counts"] == {"SUCCEEDED": 1, "RUNNING": 1}
    steps = (await api.http.get(f"{V1}/instances/{instance_id}/steps")).json()
    assert [s["step_id"] for s in steps] == ["a", "b"]
    assert (await api.http.get(f"{V1}/instances/{instance_id}/attempts")).json() == []
    assert (await api.http.get(f"{V1}/instances/{instance_id}/steps/a/attempts")).json() == []
    problem(await api.http.get(f"{V1}/instances/{instance_id}/steps/zz/attempts"), 404)
    events = (await api.http.get(f"{V1}/instances/{instance_id}/events")).json()
    assert events == {"items": [], "next_after_seq": 0}
    listed = (await api.http.get(f"{V1}/instances", params={"workflow_id": workflow_id})).json()
    assert [i["instance_id"] for i in listed["items"]] == [instance_id]
    problem(await api.http.get(f"{V1}/instances", params={"status": "DANCING"}), 422)


async def test_get_instance_can_wait_for_the_row_to_appear(api: Api) -> None:
    instance_id = uuid.uuid4().hex
    problem(await api.http.get(f"{V1}/instances/{instance_id}"), 404)

    waiting = asyncio.create_task(
        api.http.get(f"{V1}/instances/{instance_id}", params={"wait_seconds": 10})
    )
    now = datetime.now(UTC)
    await api.pool.execute(
        "INSERT INTO instances (instance_id, workflow_id, version, run, status, initiator,"
        " params, created_at, updated_at, last_seq) VALUES ($1, 'w', 1, 1, 'CREATED', 'test',"
        " '{}', $2, $2, 1)",
        instance_id,
        now,
    )
    response = await waiting

    assert response.status_code == 200, response.text
    problem(await api.http.get(f"{V1}/instances/x", params={"wait_seconds": 31}), 422)


# -- everything else ---------------------------------------------------------------------


async def test_health(api: Api) -> None:
    for url in ("/health", f"{V1}/health"):
        response = await api.http.get(url)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"


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


async def test_a_reused_idempotency_key_with_other_params_is_a_conflict(api: Api) -> None:
    workflow_id = await insert_version(api, definition(unique("idem-conflict")))
    url = f"{V1}/workflows/{workflow_id}/instances"
    first = (await api.http.post(url, json={"idempotency_key": "k-1"})).json()
    # As the projector would record it once the engine started the instance.
    await api.pool.execute(
        "INSERT INTO instances (instance_id, workflow_id, version, run, status, initiator,"
        " params, created_at, updated_at, last_seq) VALUES ($1, $2, 1, 1, 'IN_PROGRESS',"
        " 'api', '{}', $3, $3, 2)",
        first["instance_id"],
        workflow_id,
        datetime.now(UTC),
    )
    again = await api.http.post(url, json={"idempotency_key": "k-1"})
    assert again.status_code == 202
    assert again.json()["instance_id"] == first["instance_id"]
    body = problem(
        await api.http.post(url, json={"idempotency_key": "k-1", "params": {"n": 2}}), 409
    )
    assert "k-1" in body["detail"]
