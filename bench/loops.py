"""The foreach phase: one instance whose foreach runs N no-op iterations (25,000 in the
reference run, Maestro's limit) at the largest concurrency (500), on one worker. It reports
how long the loop takes and how many events it writes per iteration (the parent's and the
iterations' own)."""

from __future__ import annotations

from typing import Any

from bench.phases import PhaseContext, session

FOREACH_CONCURRENCY = 500
FOREACH_TIMEOUT_S = 900


def foreach_workflow(iterations: int) -> dict[str, Any]:
    return {
        "id": "bench-foreach",
        "name": f"a foreach of {iterations} no-op iterations",
        "run_strategy": {"rule": "PARALLEL", "max": 1000},
        "steps": [
            {
                "id": "each",
                "type": "foreach",
                "range": {"end": iterations},
                "concurrency": FOREACH_CONCURRENCY,
                "steps": [{"id": "work", "type": "noop"}],
            }
        ],
    }


async def foreach(ctx: PhaseContext) -> dict[str, Any]:
    n = ctx.sizes.foreach_iterations
    async with session(ctx, "foreach", workers=ctx.sizes.workers) as run:
        await run.client.push(foreach_workflow(n))
        iid, sent = await run.client.start("bench-foreach")
        ended = await run.tap.wait_ended(iid, FOREACH_TIMEOUT_S)
        if ended.type != "InstanceSucceeded":
            raise RuntimeError(f"the foreach instance {iid} ended {ended.type}")
        by_instance = run.tap.by_instance
        children = [k for k in by_instance if k.startswith(f"{iid}~each~")]
        parent_events = len(by_instance[iid])
        child_events = sum(len(by_instance[k]) for k in children)
    seconds = (ended.occurred_at - sent) / 1e6
    return {
        "iterations": n,
        "concurrency": FOREACH_CONCURRENCY,
        "iteration_instances": len(children),
        "seconds": seconds,
        "iterations_per_s": n / seconds,
        "parent_events": parent_events,
        "events_per_iteration": (parent_events + child_events) / n,
        "parent_events_per_iteration": parent_events / n,
    }
