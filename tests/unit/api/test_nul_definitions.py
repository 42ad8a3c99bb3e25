"""A definition holding a NUL character is a 422 at its path, at push and at validate, JSON or
YAML — it was accepted (202) and published, and the projector exited on its event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.unit.api.api_app import client_without_io


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_without_io():
        yield http


@pytest.mark.parametrize("url", ["/api/v1/workflows", "/api/v1/workflows/validate"])
@pytest.mark.parametrize(
    ("media_type", "body", "path"),
    [
        (
            "application/json",
            '{"id": "wf", "description": "a\\u0000b", "steps": [{"id": "a", "type": "noop"}]}',
            "description",
        ),
        (
            "application/json",
            '{"id": "wf", "steps": [{"id": "a", "type": "shell", "command": "echo \\u0000"}]}',
            "steps[0].command",
        ),
        (
            "application/yaml",
            'id: wf\ntags: [ok, "a\\0b"]\nsteps: [{id: a, type: noop}]\n',
            "tags[1]",
        ),
    ],
)
async def test_a_definition_holding_a_nul_is_a_422_at_its_path(
    client: httpx.AsyncClient, url: str, media_type: str, body: str, path: str
) -> None:
    response = await client.post(url, content=body, headers={"content-type": media_type})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"path": path, "message": "a string may not hold a NUL character"}
    ]
