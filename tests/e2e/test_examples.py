"""Every sample workflow in examples/ runs to completion on the real stack, takes the
branch its comments promise, and sends nothing to the dead-letter topic."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import TopicPartition

from services.adapters.kafka import TOPIC_DEADLETTER, new_consumer
from services.adapters.settings import Settings
from tests.e2e.client import Baton, baton_cli, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Children before the parents that run them.
PUSH_ORDER = ("region_report",)


def example(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return definition


async def run(baton: Baton, name: str, params: dict[str, Any] | None = None) -> str:
    iid = await baton.start(name, params)
    await run_to_end(baton, iid)
    return iid


async def run_to_end(baton: Baton, iid: str) -> None:
    done = await baton.wait_status(iid, "SUCCEEDED", "FAILED", "STOPPED", timeout=120)
    assert done["status"] == "SUCCEEDED", done


# The examples with triggers: deactivated after each test, so the every-minute cron does
# not go on starting instances during the rest of the session.
TRIGGERED = ("freshness_check", "publish_sales")


class DeadLetters:
    """The records that reach the dead-letter topic after `start`: a start a trigger could
    not make, a command the engine rejected. The examples must cause none."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = new_consumer(bootstrap, None, TOPIC_DEADLETTER)
        self.ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.consumer.start()
        # Without a group, the subscription is every partition of the topic, once its
        # metadata is in.
        await wait_until_async(self.consumer.assignment, timeout=30, message=TOPIC_DEADLETTER)
        self.ends = await self.consumer.end_offsets(sorted(self.consumer.assignment()))

    async def reasons(self) -> list[str]:
        """The reason of every record from `start` to the topic's end now."""
        ends = await self.consumer.end_offsets(list(self.ends))
        reasons: list[str] = []
        for tp, start in self.ends.items():
            if ends[tp] <= start:
                continue
            self.consumer.seek(tp, start)
            while await self.consumer.position(tp) < ends[tp]:
                batch = await self.consumer.getmany(tp, timeout_ms=1000)
                reasons += [
                    dict(r.headers).get("reason", b"").decode()
                    for r in batch.get(tp, [])
                    if r.offset < ends[tp]
                ]
        return reasons

    async def stop(self) -> None:
        await self.consumer.stop()


@pytest.fixture
async def pushed(baton: Baton, settings: Settings) -> AsyncIterator[Baton]:
    dead = DeadLetters(settings.kafka_bootstrap)
    await dead.start()
    try:
        names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
        for name in sorted(names, key=lambda n: n not in PUSH_ORDER):
            await baton.push(example(name))
        yield baton
        for name in TRIGGERED:
            r = await baton.http.post(f"/workflows/{name}/actions/deactivate")
            assert r.status_code == 202, r.text
        assert await dead.reasons() == []
    finally:
        await dead.stop()


async def signal(baton: Baton, name: str, **params: Any) -> None:
    r = await baton.http.post("/signals", json={"name": name, "params": params})
    assert r.status_code == 202, r.text


async def test_every_example_runs_to_completion(pushed: Baton) -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert {
        "etl_partitions",
        "ml_training",
        "parent_with_children",
        "freshness_check",
        "publish_sales",
    } <= set(names)
    # publish_sales waits for the quality check of its day (`unknown` by default).
    await signal(pushed, "quality_checked", table="sales", day="unknown", score=95)
    started = {name: await run(pushed, name) for name in names}
    # freshness_check announced its table with `table_ready`, which starts publish_sales for
    # the day (its own run's signal, or an earlier cron firing's that day: dedup on `day`).
    r = await pushed.http.get("/signals", params={"name": "table_ready"})
    sender = f"step:{started['freshness_check']}/announce"
    [announced] = [s for s in r.json()["items"] if s["sender"] == sender]
    day = announced["params"]["day"]
    await wait_until_async(
        lambda: publish_sales_of(pushed, day),
        timeout=30,
        message=f"publish_sales started by freshness_check's signal for {day}",
    )


async def publish_sales_of(baton: Baton, day: str) -> list[dict[str, Any]]:
    """The publish_sales instances a `table_ready` signal started for `day`."""
    found = []
    for item in await baton.list_instances(workflow_id="publish_sales"):
        if not item["initiator"].startswith("signal:table_ready#"):
            continue
        instance = await baton.instance(item["instance_id"])
        if instance["params"].get("day") == day:
            found.append(instance)
    return found


async def test_the_documented_cli_signal_starts_publish_sales_with_a_digits_day(
    pushed: Baton, settings: Settings
) -> None:
    """`baton signal table_ready -p day=20251121` sends the day as a long (the CLI reads
    digits as a number); publish_sales declares `day` a string and starts with the digits,
    instead of the start being dead-lettered (`params.day: expected a string`)."""
    day = str(uuid.uuid4().int % 10**12)
    await baton_cli(settings, "signal", "table_ready", "-p", "table=sales", "-p", f"day={day}")
    await wait_until_async(
        lambda: publish_sales_of(pushed, day),
        timeout=30,
        message=f"publish_sales started for the day {day}",
    )
    [instance] = await publish_sales_of(pushed, day)
    await pushed.wait_step(instance["instance_id"], "publish", "WAITING_FOR_SIGNALS")
    # The quality check's day, also digits from the CLI, meets the wait for `day: "${day}"`.
    await baton_cli(
        settings,
        "signal",
        "quality_checked",
        "-p",
        "table=sales",
        "-p",
        f"day={day}",
        "-p",
        "score=97",
    )
    await run_to_end(pushed, instance["instance_id"])


async def test_the_cron_workflow_fires_by_itself(pushed: Baton) -> None:
    """`* * * * *`: the next minute starts freshness_check without any request."""
    fired: list[dict[str, Any]] = []
    # Each test pushes (and activates) the examples again: only this test's version counts
    # (an earlier test's version may have fired too, before this push restarted the count).
    version = (await pushed.http.get("/workflows/freshness_check")).json()["latest_version"]

    async def succeeded() -> bool:
        nonlocal fired
        items = await pushed.list_instances(workflow_id="freshness_check")
        fired = [i for i in items if i["initiator"] == "cron:* * * * *" and i["version"] == version]
        return any(i["status"] == "SUCCEEDED" for i in fired)

    await wait_until_async(succeeded, timeout=90, message="freshness_check fired by its cron")
    steps = await pushed.steps(fired[0]["instance_id"])
    assert steps["announce"]["status"] == "SUCCEEDED"  # its signal went to table_ready
    workflow = (await pushed.http.get("/workflows/freshness_check")).json()
    [trigger] = workflow["time_triggers"]
    assert trigger["fired"] >= 1 and trigger["scheduled_for"] > fired[0]["created_at"]


async def test_a_signal_starts_publish_sales_once_per_day_and_it_waits_for_quality(
    pushed: Baton,
) -> None:
    day = unique("day")
    await signal(pushed, "table_ready", table="sales", day=day)
    await signal(pushed, "table_ready", table="sales", day=day)  # the same day: deduped
    await signal(pushed, "table_ready", table="orders", day=day)  # another table: no match
    started: list[str] = []

    async def one_started() -> bool:
        nonlocal started
        items = await pushed.list_instances(workflow_id="publish_sales")
        started = [
            i["instance_id"]
            for i in items
            if (await pushed.instance(i["instance_id"])).get("params", {}).get("day") == day
        ]
        return bool(started)

    await wait_until_async(one_started, timeout=30, message=f"publish_sales started for {day}")
    [iid] = started
    await pushed.wait_step(iid, "publish", "WAITING_FOR_SIGNALS")
    await signal(pushed, "quality_checked", table="sales", day=day, score=80)  # below 90
    await signal(pushed, "quality_checked", table="sales", day=day, score=97)
    await run_to_end(pushed, iid)
    await one_started()
    assert started == [iid]  # the second table_ready of that day started nothing


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
