"""The two workflow shapes, as Temporal workflows. Kept apart from run.py because Temporal's
workflow sandbox re-imports a workflow's module: it must be importable and free of side
effects. Activities are called by name, so this module does not import their code."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

ACTIVITY_QUEUE = "bench-activities"
WORKFLOW_QUEUE = "bench-workflows"
NOOP = "noop"
CHAIN_STEPS = 20
FANOUT_WIDTH = 100
_TIMEOUT = timedelta(seconds=60)


async def _step(trace: str, instance: str, step: str) -> None:
    await workflow.execute_activity(
        NOOP,
        args=[trace, instance, step],
        task_queue=ACTIVITY_QUEUE,
        start_to_close_timeout=_TIMEOUT,
    )


@workflow.defn(name="chain20")
class Chain20:
    @workflow.run
    async def run(self, trace: str, instance: str) -> None:
        for i in range(CHAIN_STEPS):
            await _step(trace, instance, f"s{i}")


@workflow.defn(name="fanout100")
class Fanout100:
    @workflow.run
    async def run(self, trace: str, instance: str) -> None:
        await _step(trace, instance, "fan")
        await asyncio.gather(*(_step(trace, instance, f"f{i}") for i in range(FANOUT_WIDTH)))
        await _step(trace, instance, "join")
