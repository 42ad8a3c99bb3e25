"""A database outage under a route is a 503 problem+json with Retry-After, not a 500; other
errors of the same classes stay 500s."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI

from services.api import problems
from services.api.problems import MEDIA_TYPE


def app_raising(err: Exception) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/x")
    async def raise_it() -> None:
        raise err

    return app


async def get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/x")


async def test_the_server_away_is_503_database_unavailable() -> None:
    for err in (
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    ):
        r = await get(app_raising(err))
        assert r.status_code == 503, (err, r.text)
        assert r.headers["content-type"] == MEDIA_TYPE
        assert r.headers["retry-after"] == str(problems.UNAVAILABLE_RETRY_AFTER_S)
        assert r.json()["type"] == "urn:baton:problem:database-unavailable"


async def test_a_misused_connection_is_still_a_500() -> None:
    r = await get(
        app_raising(asyncpg.exceptions.InterfaceError("another operation is in progress"))
    )
    assert r.status_code == 500
    assert r.headers["content-type"] == MEDIA_TYPE
