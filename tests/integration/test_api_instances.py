"""The API's instance routes against real Kafka and PostgreSQL, in-process (no engine running):
starting instances, the actions on them, and reading them back.

Writes are checked by reading the published command back from the commands topic; reads
are checked against rows inserted straight into the read models.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from services.domain.protocol.commands import StartInstance, StopInstance
from tests.integration.api_harness import (
    V1,
    Api,
    definition,
    find_command,
    insert_instance,
    insert_version,
    paths,
    problem,
    unique,
)

pytestmark = pytest.mark.integration


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
        admitted=False,  # the workflow's run strategy admits it
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
