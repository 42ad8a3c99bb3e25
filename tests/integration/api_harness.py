"""Shared plumbing for the API integration tests (test_api_*.py): the client and its pool,
and helpers that read published commands back and write read-model rows directly.

The module-scoped ``api`` fixture itself lives in this package's conftest.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from services.adapters.avro import Codec
from services.adapters.kafka import TOPIC_COMMANDS, new_consumer
from services.api.problems import MEDIA_TYPE
from services.domain.language.parse import parse_workflow_text
from services.domain.protocol.commands import CommandEnvelope
from tests.helpers import wait_until_async

V1 = "/api/v1"


@dataclass
class Api:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    codec: Codec
    bootstrap: str


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
