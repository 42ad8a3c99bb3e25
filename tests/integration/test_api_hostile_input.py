"""Hostile values that used to reach PostgreSQL and come back as 500s: a NUL byte (text
cannot hold one) and numbers past the int4 columns. Each is a 422 naming the value's path,
decided before any query; a data error that still reaches the database is a 422 too.
"""

from __future__ import annotations

import asyncpg
import orjson
import pytest
from starlette.requests import Request

from services.adapters.kafka import new_producer
from services.api import problems
from services.api.common import publish
from services.api.problems import MEDIA_TYPE, Problem
from services.api.publishing import Publisher, PublishGate
from services.domain.protocol.commands import SendSignal
from tests.integration.api_harness import (
    V1,
    Api,
    definition,
    insert_instance,
    insert_version,
    paths,
    problem,
    unique,
)

pytestmark = pytest.mark.integration

INT32_OVER = 2**31


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (f"{V1}/instances/a%00b", "path.instance_id"),
        ("/registry/schemas/ids/2147483648", "path.schema_id"),
        (f"{V1}/registry/schemas/ids/9223372036854775808", "path.schema_id"),
        (f"{V1}/workflows/a%00b", "path.workflow_id"),
        (f"{V1}/workflows/nope", None),
        ("/registry/subjects/a%00b/versions", "path.subject"),
        (f"{V1}/instances?workflow_id=a%00b", "query.workflow_id"),
        (f"{V1}/instances?parent_instance_id=a%00b", "query.parent_instance_id"),
        (f"{V1}/signals?name=a%00b", "query.name"),
    ],
)
async def test_nul_bytes_and_ids_past_int32_are_422_not_500(
    api: Api, url: str, path: str | None
) -> None:
    response = await api.http.get(url)

    if path is None:  # the control: a well-formed request is answered normally
        problem(response, 404)
        return
    assert paths(problem(response, 422)) == [path]


async def test_a_restart_step_with_a_nul_byte_is_422(api: Api) -> None:
    wf = await insert_version(api, definition(unique("hostile")))
    instance_id = await insert_instance(api, wf, "FAILED")

    response = await api.http.post(
        f"{V1}/instances/{instance_id}/actions/restart",
        json={"mode": "FROM_STEP", "step": "a\x00b"},
    )

    assert paths(problem(response, 422)) == ["step"]


async def test_event_reads_past_int32_are_422(api: Api) -> None:
    wf = await insert_version(api, definition(unique("hostile")))
    instance_id = await insert_instance(api, wf, "FAILED")

    response = await api.http.get(
        f"{V1}/instances/{instance_id}/events", params={"after_seq": INT32_OVER}
    )

    assert paths(problem(response, 422)) == ["query.after_seq"]


@pytest.mark.parametrize("action", ["start", "activate"])
async def test_body_versions_past_int32_are_422(api: Api, action: str) -> None:
    wf = await insert_version(api, definition(unique("hostile")))
    url = (
        f"{V1}/workflows/{wf}/instances"
        if action == "start"
        else (f"{V1}/workflows/{wf}/actions/activate")
    )

    response = await api.http.post(url, json={"version": INT32_OVER})

    assert paths(problem(response, 422)) == ["version"]


@pytest.mark.parametrize(
    ("sql", "argument"),
    [
        ("SELECT $1::text", "a\x00b"),  # the server's CharacterNotInRepertoireError
        ("SELECT $1::int4", INT32_OVER),  # asyncpg's own DataError, raised as it encodes
    ],
)
async def test_a_data_error_from_the_database_is_a_422_problem(
    api: Api, sql: str, argument: object
) -> None:
    with pytest.raises(asyncpg.DataError) as caught:
        await api.pool.fetchval(sql, argument)
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})

    response = await problems.on_data_error(request, caught.value)

    assert response.status_code == 422
    assert response.headers["content-type"] == MEDIA_TYPE
    text = bytes(response.body).decode()
    body = orjson.loads(text)
    assert body["type"] == "urn:baton:problem:invalid-request"
    assert body["errors"][0]["path"] == ""
    # The value itself is not echoed back (it may be anything, NUL bytes included).
    assert "\\u0000" not in text
    assert str(INT32_OVER) not in text


async def test_start_params_too_large_for_a_command_are_422_not_a_publish_failure(
    api: Api,
) -> None:
    # Each string under the per-param limit: 3 MB together made a command Kafka refused
    # (MessageSizeTooLargeError), and the API answered 503 "safe to retry". Such a body is
    # now a 413 before any route (the body guard's 1 MB); 600 KB fit the body, not a start.
    wf = await insert_version(api, definition(unique("hostile")))
    params = {f"p{i}": "x" * 60_000 for i in range(10)}

    response = await api.http.post(f"{V1}/workflows/{wf}/instances", json={"params": params})

    assert paths(problem(response, 422)) == ["params"]


async def test_restart_params_too_large_for_a_command_are_422(api: Api) -> None:
    wf = await insert_version(api, definition(unique("hostile")))
    instance_id = await insert_instance(api, wf, "FAILED")
    params = {f"p{i}": "x" * 60_000 for i in range(10)}

    response = await api.http.post(
        f"{V1}/instances/{instance_id}/actions/restart", json={"params": params}
    )

    assert paths(problem(response, 422)) == ["params"]


async def test_a_command_kafka_refuses_for_its_size_is_413_not_a_retryable_503(api: Api) -> None:
    # The net under the body rules: what no retry can fix is not "Service Unavailable".
    producer = new_producer(api.bootstrap)
    await producer.start()
    try:
        command = SendSignal(
            signal_name="big",
            request_id=unique("r"),
            params="{}",
            payload="x" * 2_000_000,
            sender="api:test",
        )
        with pytest.raises(Problem) as caught:
            await publish(Publisher(producer, PublishGate()), api.codec, command)
    finally:
        await producer.stop()

    assert caught.value.status == 413
    assert caught.value.type == "urn:baton:problem:too-large"
