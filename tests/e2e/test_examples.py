"""Every sample workflow in examples/ runs to completion on the real stack, and takes the
branch its comments promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.client import Baton

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Children before the parents that run them.
PUSH_ORDER = ("region_report",)


def example(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return definition


async def run(baton: Baton, name: str, params: dict[str, Any] | None = None) -> str:
    iid = await baton.start(name, params)
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED", timeout=120)
    assert done["status"] == "SUCCEEDED", done
    return iid


@pytest.fixture
async def pushed(baton: Baton) -> Baton:
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    for name in sorted(names, key=lambda n: n not in PUSH_ORDER):
        await baton.push(example(name))
    return baton


async def test_every_example_runs_to_completion(pushed: Baton) -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert {"etl_partitions", "ml_training", "parent_with_children"} <= set(names)
    for name in names:
        await run(pushed, name)


async def test_the_etl_publishes_or_alerts_on_its_row_counts(pushed: Baton) -> None:
    ok = await pushed.steps(await run(pushed, "etl_partitions"))
    assert (ok["publish"]["status"], ok["alert"]["status"]) == ("SUCCEEDED", "UNSATISFIED")
    assert ok["per_partition"]["iterations"]["statuses"] == {"SUCCEEDED": 3}
    low = await pushed.steps(await run(pushed, "etl_partitions", {"min_rows": 1}))
    assert (low["publish"]["status"], low["alert"]["status"]) == ("UNSATISFIED", "SUCCEEDED")


async def test_the_training_loop_stops_at_its_target_and_deploys(pushed: Baton) -> None:
    steps = await pushed.steps(await run(pushed, "ml_training"))
    assert steps["train"]["iterations"]["started"] == 5  # losses 1, .5, .25, .125, .0625
    assert steps["deploy"]["status"] == "SUCCEEDED"


async def test_the_parent_runs_its_children_sync_and_async(pushed: Baton) -> None:
    iid = await run(pushed, "parent_with_children")
    # The async child runs on its own (no parent link): the parent may end first.
    archive = await pushed.wait_status(f"{iid}~archive~1", "SUCCEEDED")
    assert archive["params"] == {"region": "archive"}
    children = await pushed.list_instances(parent_instance_id=iid)
    assert {c["parent_step_id"] for c in children} == {"europe", "america"}
