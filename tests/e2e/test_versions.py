"""Versions and activation end to end: which version `default`, `active` and `latest` start."""

from __future__ import annotations

import pytest

from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


def definition(wid: str, label: str) -> dict[str, object]:
    return {"id": wid, "params": {"label": label}, "steps": [{"id": "a", "type": "noop"}]}


async def active_version(baton: Baton, wid: str) -> int | None:
    r = await baton.http.get(f"/workflows/{wid}")
    return r.json().get("active_version") if r.status_code == 200 else -1


async def test_default_starts_the_active_version_and_falls_back_to_the_latest(baton: Baton) -> None:
    wid = unique("versions")
    await baton.push(definition(wid, "one"))
    # A second version pushed without activating it.
    r = await baton.http.post(
        "/workflows", params={"activate": "false"}, json=definition(wid, "two")
    )
    assert r.status_code == 202, r.text

    async def two_versions() -> bool:
        got = await baton.http.get(f"/workflows/{wid}")
        return got.status_code == 200 and got.json()["latest_version"] == 2

    await wait_until_async(two_versions, timeout=30, message="version 2 visible")
    assert await active_version(baton, wid) == 1

    async def started_version(version: str | None) -> int:
        body = {} if version is None else {"version": version}
        r = await baton.http.post(f"/workflows/{wid}/instances", json=body)
        assert r.status_code == 202, r.text
        return int(r.json()["version"])

    assert await started_version(None) == 1  # default: the active one
    assert await started_version("latest") == 2
    got = await baton.http.get(f"/workflows/{wid}/versions/active")
    assert got.json()["version"] == 1

    r = await baton.http.post(f"/workflows/{wid}/actions/activate", json={"version": 2})
    assert r.status_code == 202, r.text

    async def active_is(version: int | None) -> bool:
        return await active_version(baton, wid) == version

    await wait_until_async(lambda: active_is(2), timeout=30, message="v2 active")
    assert await started_version("active") == 2

    r = await baton.http.post(f"/workflows/{wid}/actions/deactivate")
    assert r.status_code == 202, r.text
    await wait_until_async(lambda: active_is(None), timeout=30, message="none active")
    r = await baton.http.post(f"/workflows/{wid}/instances", json={"version": "active"})
    assert r.status_code == 404
    assert r.json()["detail"] == f"an active version of workflow {wid!r} does not exist"
    assert await started_version("default") == 2  # no active version: the latest

    r = await baton.http.post(f"/workflows/{wid}/actions/activate", json={"version": 9})
    assert r.status_code == 404
