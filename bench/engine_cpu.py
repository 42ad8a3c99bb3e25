"""CPU cost of the engine's decision path, without Kafka: µs of process time per command.

    .venv/bin/python -m bench.engine_cpu [--instances 2000]

A shard (no producer) decides what workers report for chains of 20 no-op steps: StartInstance,
then ReportAttemptStarted + ReportAttemptSucceeded for each step, as encoded records, exactly
the bytes a worker sends; decode, decide, fold, derive tasks, encode events and tasks. Process
time, not wall time, so a busy machine changes the figure little.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.workloads import CHAIN_STEPS, chain20
from services.adapters.avro import Codec
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    Command,
    CommandEnvelope,
    PushWorkflow,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    StartInstance,
)
from services.engine.shard import Shard


@dataclass
class _Record:
    """What the shard reads of a consumer record."""

    value: bytes
    offset: int
    key: bytes | None = None
    topic: str = "baton.commands"
    partition: int = 0
    headers: tuple[Any, ...] = ()


def _records(codec: Codec, commands: list[Command], start: int) -> list[_Record]:
    return [
        _Record(codec.encode_command(CommandEnvelope(uuid.uuid4().hex, 0, c)), start + i)
        for i, c in enumerate(commands)
    ]


def measure(instances: int) -> dict[str, float]:
    codec = Codec()
    shard = Shard(0, None, codec, "bench", 30.0, lambda q: None, 1)  # no producer: never commits
    definition = parse_workflow(chain20()).to_json()
    now = time.time_ns() // 1000
    offset = 0
    batch = _records(codec, [PushWorkflow("bench-chain20", definition)], offset)
    shard.decide_batch(batch, now)
    ids = [uuid.uuid4().hex for _ in range(instances)]
    starts = [StartInstance(i, "bench-chain20", 1, definition, "{}", "bench") for i in ids]
    waves: list[list[_Record]] = [_records(codec, list(starts), 1)]
    offset = 1 + instances
    for step in range(CHAIN_STEPS):
        sid = f"s{step}"
        reports: list[Command] = []
        for iid in ids:
            reports.append(ReportAttemptStarted(iid, sid, 1, "w"))
            reports.append(ReportAttemptSucceeded(iid, sid, 1, "{}"))
        waves.append(_records(codec, reports, offset))
        offset += len(reports)
    commands = sum(len(w) for w in waves)
    events = tasks = 0
    cpu0 = time.process_time()
    for wave in waves:
        for at in range(0, len(wave), 200):  # batches as a busy partition delivers them
            out = shard.decide_batch(wave[at : at + 200], now)
            events += len(out.events)
            tasks += len(out.tasks)
    cpu = time.process_time() - cpu0
    return {
        "commands": commands,
        "events": events,
        "tasks": tasks,
        "us_per_command": cpu / commands * 1e6,
        "us_per_step": cpu / (instances * CHAIN_STEPS) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    args = parser.parse_args()
    r = measure(args.instances)
    print(
        f"{r['commands']:,.0f} commands -> {r['events']:,.0f} events, {r['tasks']:,.0f} tasks:"
        f" {r['us_per_command']:.1f} µs of CPU per command, {r['us_per_step']:.1f} µs per step"
    )


if __name__ == "__main__":
    main()
