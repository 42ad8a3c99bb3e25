"""A NUL character in a request body, on the real processes. PostgreSQL's text and jsonb
cannot hold one, and the body's strings reach them through the log (the projector writes
initiators, reasons, params, payloads and senders): the API refuses it with a 422 naming the
value's path, before anything is published, and the projector keeps projecting.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e

NUL = "a\x00b"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"sender": NUL}, "sender"),
        ({"request_id": NUL}, "request_id"),
        ({"params": {"table": NUL}}, "params.table"),
        ({"payload": {"rows": [1, {"note": NUL}]}}, "payload.rows[1].note"),
        ({"payload": {NUL: 1}}, f"payload.{NUL}"),
    ],
)
async def test_a_signal_with_a_nul_character_is_422_and_the_projector_goes_on(
    baton: Baton, body: dict[str, Any], path: str
) -> None:
    name = unique("nul")

    refused = await baton.http.post("/signals", json={"name": name, **body})

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in refused.json()["errors"]] == [path]
    sent = await baton.http.post("/signals", json={"name": name, "sender": "after"})
    assert sent.status_code == 202, sent.text

    async def projected() -> bool:
        items = (await baton.http.get("/signals", params={"name": name})).json()["items"]
        return [s["sender"] for s in items] == ["api:after"]

    await wait_until_async(projected, timeout=30, message="the next signal projected")


async def test_a_start_or_an_action_with_a_nul_character_is_422(baton: Baton) -> None:
    wid = unique("nul")
    await baton.push({"id": wid, "steps": [{"id": "a", "type": "sleep", "duration": "30s"}]})

    for body, path in [
        ({"initiator": NUL}, "initiator"),
        ({"idempotency_key": NUL}, "idempotency_key"),
        ({"params": {"note": NUL}}, "params.note"),
        ({"params": {"notes": ["x", NUL]}}, "params.notes[1]"),
    ]:
        refused = await baton.http.post(f"/workflows/{wid}/instances", json=body)
        assert refused.status_code == 422, refused.text
        assert [e["path"] for e in refused.json()["errors"]] == [path]

    iid = await baton.start(wid)
    await baton.wait_status(iid, "IN_PROGRESS")
    refused = await baton.http.post(f"/instances/{iid}/actions/stop", json={"reason": NUL})
    assert refused.status_code == 422, refused.text
    assert [e["path"] for e in refused.json()["errors"]] == ["reason"]
    stopped = await baton.http.post(f"/instances/{iid}/actions/stop", json={"reason": "done"})
    assert stopped.status_code == 202, stopped.text
    assert (await baton.wait_status(iid, "STOPPED"))["status"] == "STOPPED"


async def test_a_signal_with_an_integer_past_64_bits_is_listed_as_sent(baton: Baton) -> None:
    # Legal JSON, accepted and stored (jsonb numbers are exact); orjson cannot render it, and
    # every later listing of the signals was a 500.
    name = unique("bigint")
    sent = await baton.http.post("/signals", json={"name": name, "payload": {"n": 10**30}})
    assert sent.status_code == 202, sent.text

    async def listed() -> bool:
        response = await baton.http.get("/signals", params={"name": name})
        assert response.status_code == 200, response.text
        return [s["payload"] for s in response.json()["items"]] == [{"n": 10**30}]

    await wait_until_async(listed, timeout=30, message="the signal listed")
