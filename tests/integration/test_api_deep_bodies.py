"""JSON bodies nested deeper than anything Baton accepts are a 422 naming the path, and
oversized bodies a 413, before any route parses or walks them (issue 14, item 8): never a
RecursionError (500), a plain 400, nor a record that the engine or projector then chokes on."""

from __future__ import annotations

import pytest

from services.domain.kernel.documents import MAX_DEPTH
from tests.integration.api_harness import V1, Api, definition, insert_version, unique

pytestmark = pytest.mark.integration


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 100_000])
async def test_a_deep_signal_payload_is_422_naming_the_path(api: Api, depth: int) -> None:
    body = '{"name":"deep","payload":' + nested(depth) + "}"
    response = await api.http.post(
        f"{V1}/signals", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (fault,) = response.json()["errors"]
    assert fault["path"].startswith("payload.a.a")
    assert "nested more than" in fault["message"]


@pytest.mark.parametrize("depth", [900, 100_000])
async def test_deep_start_params_are_422_naming_the_path(api: Api, depth: int) -> None:
    wid = await insert_version(api, definition(unique("deep")))
    body = '{"params":{"m":' + nested(depth) + "}}"
    response = await api.http.post(
        f"{V1}/workflows/{wid}/instances",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    (fault,) = response.json()["errors"]
    assert fault["path"].startswith("params.m.a.a")


async def test_a_json_body_over_a_megabyte_is_413(api: Api) -> None:
    body = '{"name":"big","payload":"' + "x" * 1_100_000 + '"}'
    response = await api.http.post(
        f"{V1}/signals", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_ordinary_bodies_are_untouched(api: Api) -> None:
    response = await api.http.post(
        f"{V1}/signals",
        json={"name": "fine", "params": {"day": 1}, "payload": {"rows": [1, 2, {"a": "b"}]}},
    )
    assert response.status_code == 202, response.text
    response = await api.http.post(
        f"{V1}/signals", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["errors"][0]["message"]
