"""Params, expressions and conditional branches end to end, on the real processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.client import Baton, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


def branching(wid: str) -> dict[str, Any]:
    """extract reports a row count; `big` runs when it exceeds `min`, `small` otherwise."""
    return {
        "id": wid,
        "time_zone": "Europe/Amsterdam",
        "params": {
            "min": 5,
            "limit": {"type": "long", "expression": "min * 2"},
            "day": {"type": "string", "value": "${instance.run_date}", "mode": "IMMUTABLE"},
            "owner": {"type": "string", "value": "etl", "mode": "MUTABLE_ON_START"},
        },
        "steps": [
            {
                "id": "extract",
                "type": "shell",
                "command": 'echo "{\\"rows\\": 3}" > "$BATON_OUTPUTS"',
                "next": [
                    {"step": "big", "if": "steps.extract.outputs.rows > min"},
                    {"step": "small", "if": "steps.extract.outputs.rows <= params.min"},
                ],
            },
            {"id": "big", "type": "noop", "next": ["report"]},
            {
                "id": "small",
                "type": "shell",
                "params": {
                    "n": {"type": "long", "expression": "steps.extract.outputs.rows * 10"},
                    "label": "${day}: ${steps.extract.outputs.rows} rows",
                },
                "command": 'echo "{\\"n\\": $n}" > "$BATON_OUTPUTS"',
                "next": ["report"],
            },
            {"id": "report", "type": "noop"},
        ],
    }


async def test_a_false_branch_is_unsatisfied_and_outputs_flow_into_params(baton: Baton) -> None:
    wid = unique("branch")
    await baton.push(branching(wid))
    iid = await baton.start(wid)
    inst = await baton.wait_status(iid, "SUCCEEDED", "FAILED")
    assert inst["status"] == "SUCCEEDED", inst
    steps = await baton.steps(iid)
    assert {k: v["status"] for k, v in steps.items()} == {
        "extract": "SUCCEEDED",
        "big": "UNSATISFIED",
        "small": "SUCCEEDED",
        "report": "SUCCEEDED",
    }
    assert steps["big"]["reason"] == "extract -> big: steps.extract.outputs.rows > min is false"
    # Evaluated params are recorded with the attempt: the start's and the step's own.
    assert inst["params"]["limit"] == 10
    day = inst["params"]["day"]
    assert len(day) == 10 and day[4] == "-"
    (small,) = await baton.attempts(iid, "small")
    assert small["params"]["n"] == 30
    assert small["params"]["label"] == f"{day}: 3 rows"
    assert small["outputs"] == {"n": 30}
    types = [e["type"] for e in await baton.events(iid)]
    assert types.count("StepUnsatisfied") == 1


async def test_restart_with_overrides_takes_the_other_branch_and_modes_are_enforced(
    baton: Baton,
) -> None:
    wid = unique("rebranch")
    await baton.push(branching(wid))
    iid = await baton.start(wid)
    await baton.wait_status(iid, "SUCCEEDED")

    refused = await baton.act(iid, "restart", {"mode": "FROM_BEGINNING", "params": {"owner": "x"}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["path"] == "params.owner"
    assert "MUTABLE_ON_START" in refused.json()["errors"][0]["message"]

    r = await baton.act(iid, "restart", {"mode": "FROM_BEGINNING", "params": {"min": 1}})
    assert r.status_code == 202, r.text

    async def second_run_ended() -> bool:
        inst = await baton.instance(iid)
        return inst["run"] == 2 and inst["status"] in ("SUCCEEDED", "FAILED")

    await wait_until_async(second_run_ended, timeout=60, message="run 2 ends")
    inst = await baton.instance(iid)
    assert inst["status"] == "SUCCEEDED", inst
    assert inst["params"]["min"] == 1
    assert inst["params"]["limit"] == 10  # MUTABLE: kept from run 1, not evaluated again
    steps = await baton.steps(iid)
    assert (steps["big"]["status"], steps["small"]["status"]) == ("SUCCEEDED", "UNSATISFIED")


async def test_bad_params_are_refused_before_anything_starts(baton: Baton) -> None:
    wid = unique("badparams")
    invalid = branching(wid)
    invalid["params"]["x"] = "${nope}"
    invalid["steps"][0]["next"][0]["if"] = "steps.extract.outputs.rows + 1"
    r = await baton.http.post("/workflows", json=invalid)
    assert r.status_code == 422, r.text
    paths = {e["path"]: e["message"] for e in r.json()["errors"]}
    assert "unknown name 'nope'" in paths["params.x.value"]
    assert "not a boolean expression" in paths["steps[0].next[0].if"]

    good = branching(wid)
    good["params"]["ratio"] = {"type": "long", "expression": "10 / min"}
    await baton.push(good)
    r = await baton.http.post(f"/workflows/{wid}/instances", json={"params": {"min": 0}})
    assert r.status_code == 422, r.text
    assert "division by zero" in r.json()["errors"][0]["message"]
    r = await baton.http.post(f"/workflows/{wid}/instances", json={"params": {"day": "x"}})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0] == {
        "path": "params.day",
        "message": "the param is IMMUTABLE: it cannot change at start",
    }
