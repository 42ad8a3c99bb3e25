"""The API app over stand-ins for its pool and producer that fail on any use, and its OpenAPI
document, for the unit tests of what the document declares and what the server answers.

A request that got past validation to a query would be a 500 here, so a 422 also proves that
the fault is caught before any query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx
from fastapi import FastAPI

from services.api.app import ApiOptions, create_app
from services.api.deps import ApiDeps
from services.api.validation import DefinitionValidator

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
# A value each path parameter accepts, to reach the one under test.
PATH_SAMPLES = {
    "workflow_id": "wf",
    "instance_id": "wf~0123abcd",
    "step_id": "a",
    "version": "1",
    "subject": "baton.events-value",
    "schema_id": "1",
    "action": "skip",
}


class _NoIO:
    """A pool, producer or cluster probe that must not be used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no I/O expected, but {name} was used")


class Failing:
    """A pool, producer or cluster probe whose every use raises `error` (awaited or not)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*_: Any, **__: Any) -> Any:
            raise self.error

        return fail


def app_without_io() -> FastAPI:
    deps = ApiDeps(
        pool=cast(Any, _NoIO()),
        producer=cast(Any, _NoIO()),
        codec=cast(Any, None),
        cluster=cast(Any, _NoIO()),
    )
    return create_app(deps)


class _AnyCodec:
    """A codec that encodes every command as nothing (the producer it goes to fails)."""

    def encode_command(self, _: object) -> bytes:
        return b""


def app_over(
    pool: object,
    producer: object,
    *,
    cluster: object | None = None,
    validator: DefinitionValidator | None = None,
    options: ApiOptions | None = None,
) -> FastAPI:
    """The app over the given stand-ins; commands reach `producer` encoded as nothing."""
    deps = ApiDeps(
        pool=cast(Any, pool),
        producer=cast(Any, producer),
        codec=cast(Any, _AnyCodec()),
        cluster=cast(Any, cluster if cluster is not None else _NoIO()),
        validator=validator or DefinitionValidator(),
    )
    return create_app(deps, options)


DOCUMENT: dict[str, Any] = app_without_io().openapi()


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


OPERATIONS = list(_operations())
IDS = [f"{m.upper()} {p}" for p, m, _ in OPERATIONS]


def member_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema itself, or the members of its anyOf (an optional parameter)."""
    return [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]


async def client_without_io() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_without_io(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        yield http
