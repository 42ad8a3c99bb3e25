"""Signals end to end, on the real processes: a step waits (WAITING_FOR_SIGNALS) until a
matching signal arrives by API, another workflow's step wakes it with its signal outputs, a
user bypasses a wait, and a request id sent twice is one signal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


def waiter(wf: str, signal: str) -> dict[str, Any]:
    return {
        "id": wf,
        "params": {"table": "sales"},
        "steps": [
            {
                "id": "load",
                "type": "shell",
                "command": "true",
                "signal_dependencies": [
                    {
                        "name": signal,
                        "match": {"table": "${table}", "day": {"op": ">=", "value": 20251120}},
                    }
                ],
                "next": ["report"],
            },
            {"id": "report", "type": "noop"},
        ],
    }


async def send(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post("/signals", json=body)
    assert r.status_code == 202, r.text
    result: dict[str, Any] = r.json()
    return result


async def received(http: httpx.AsyncClient, name: str, count: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    async def seen() -> bool:
        nonlocal items
        items = (await http.get("/signals", params={"name": name})).json()["items"]
        return len(items) >= count

    await wait_until_async(seen, timeout=30, message=f"{count} signal(s) {name} projected")
    return items


async def test_a_step_waits_until_a_matching_signal_arrives(baton: Baton) -> None:
    wf, signal = unique("waits"), unique("table_ready")
    await baton.push(waiter(wf, signal))
    iid = await baton.start(wf)
    await baton.wait_step(iid, "load", "WAITING_FOR_SIGNALS")
    steps = await baton.steps(iid)
    assert steps["load"]["signals"]["dependencies"] == [
        {"name": signal, "match": [["day", ">=", 20251120], ["table", "=", "sales"]]}
    ]
    # Not a match (another table), then a match: only the second wakes the step.
    await send(baton.http, {"name": signal, "params": {"table": "orders", "day": 20251121}})
    await received(baton.http, signal, 1)
    assert (await baton.steps(iid))["load"]["status"] == "WAITING_FOR_SIGNALS"
    await send(
        baton.http,
        {"name": signal, "params": {"table": "sales", "day": 20251121}, "payload": {"n": 1}},
    )
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", timeout=60)
    assert done["status"] == "SUCCEEDED", done
    assert (await baton.steps(iid))["load"]["signals"]["matched"] == {
        "0": {"name": signal, "signal_seq": 2}
    }
    newest = (await received(baton.http, signal, 2))[0]
    assert (newest["signal_seq"], newest["woken"], newest["payload"]) == (2, 1, {"n": 1})


async def test_a_steps_signal_outputs_wake_another_workflow(baton: Baton) -> None:
    wf, sender, signal = unique("waits"), unique("sender"), unique("table_ready")
    await baton.push(waiter(wf, signal))
    await baton.push(
        {
            "id": sender,
            "steps": [
                {
                    "id": "publish",
                    "type": "shell",
                    "command": 'echo \'{"day": 20251122}\' > "$BATON_OUTPUTS"',
                    "signal_outputs": [
                        {
                            "name": signal,
                            "params": {
                                "table": "sales",
                                "day": {"type": "long", "expression": "steps.publish.outputs.day"},
                            },
                        }
                    ],
                }
            ],
        }
    )
    iid = await baton.start(wf)
    await baton.wait_step(iid, "load", "WAITING_FOR_SIGNALS")
    await baton.start(sender)
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", timeout=60)
    assert done["status"] == "SUCCEEDED", done
    [sent] = await received(baton.http, signal, 1)
    assert sent["params"] == {"table": "sales", "day": 20251122}
    assert sent["sender"].startswith(f"step:{sender}~")


async def test_bypass_starts_a_waiting_step_and_a_request_id_dedups(baton: Baton) -> None:
    wf, signal = unique("waits"), unique("table_ready")
    await baton.push(waiter(wf, signal))
    iid = await baton.start(wf)
    await baton.wait_step(iid, "load", "WAITING_FOR_SIGNALS")
    r = await baton.http.post(f"/instances/{iid}/steps/report/actions/bypass-signals")
    assert r.status_code == 409, r.text
    assert "it is NOT_CREATED" in r.json()["detail"]
    r = await baton.http.post(
        f"/instances/{iid}/steps/load/actions/bypass-signals", json={"reason": "by hand"}
    )
    assert r.status_code == 202, r.text
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", timeout=60)
    assert done["status"] == "SUCCEEDED", done
    kinds = [e["type"] for e in await baton.events(iid)]
    assert "StepSignalsBypassed" in kinds and "StepSignalMatched" not in kinds

    body = {"name": signal, "params": {"table": "sales"}, "request_id": "once"}
    await send(baton.http, body)
    await send(baton.http, body)
    await send(baton.http, {**body, "request_id": "twice"})
    items = await received(baton.http, signal, 2)
    assert sorted(i["request_id"] for i in items) == ["once", "twice"]


async def test_a_bad_signal_is_rejected_with_its_path(baton: Baton) -> None:
    r = await baton.http.post("/signals", json={"name": "s", "params": {"ratio": 1.5}})
    assert r.status_code == 422, r.text
    paths = [e["path"] for e in r.json()["errors"]]
    assert any(p.startswith("params.ratio") for p in paths), r.json()
    r = await baton.http.post("/signals", json={"name": "9bad", "params": {}})
    assert r.status_code == 422
