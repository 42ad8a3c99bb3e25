"""The Restate services of the peer benchmark, served by hypercorn on 127.0.0.1:17090.

Two ways to run a step, both reported:
- `Bench/chain_run`, `Bench/fanout_run`: each step is a `ctx.run` side effect journaled inside one
  handler invocation (Restate's idiomatic "workflow as code").
- `Bench/chain_call`, `Bench/fanout_call`: each step is a durable call to `Step/step`, a handler
  of a second service (a separate invocation per step, like a task on a queue).

The trace file is named by BENCH_TRACE (the runner sets it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import restate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_common import CHAIN_STEPS, FANOUT_WIDTH, Trace, noop_step

TRACE = Trace(os.environ.get("BENCH_TRACE", "trace.txt"))
NO_RETRY = restate.RunOptions[None](max_attempts=1)

step_service = restate.Service("Step")
bench = restate.Service("Bench")


@step_service.handler()
async def step(ctx: restate.Context, req: dict[str, str]) -> None:
    noop_step(TRACE, req["instance"], req["step"])


async def _run_step(ctx: restate.Context, instance: str, name: str) -> None:
    await ctx.run_typed(name, noop_step, NO_RETRY, TRACE, instance, name)


async def _call_step(ctx: restate.Context, instance: str, name: str) -> None:
    await ctx.service_call(step, {"instance": instance, "step": name})


@bench.handler()
async def chain_run(ctx: restate.Context, instance: str) -> None:
    for i in range(CHAIN_STEPS):
        await _run_step(ctx, instance, f"s{i}")


@bench.handler()
async def chain_call(ctx: restate.Context, instance: str) -> None:
    for i in range(CHAIN_STEPS):
        await _call_step(ctx, instance, f"s{i}")


@bench.handler()
async def fanout_run(ctx: restate.Context, instance: str) -> None:
    await _run_step(ctx, instance, "fan")
    # run_typed futures start when created; gather waits for all their journal acks.
    futures: list[Any] = [
        ctx.run_typed(f"p{i}", noop_step, NO_RETRY, TRACE, instance, f"p{i}")
        for i in range(FANOUT_WIDTH)
    ]
    await restate.gather(*futures)
    await _run_step(ctx, instance, "join")


@bench.handler()
async def fanout_call(ctx: restate.Context, instance: str) -> None:
    await _call_step(ctx, instance, "fan")
    futures: list[Any] = [
        ctx.service_call(step, {"instance": instance, "step": f"p{i}"}) for i in range(FANOUT_WIDTH)
    ]
    await restate.gather(*futures)
    await _call_step(ctx, instance, "join")


app = restate.app(services=[bench, step_service])
