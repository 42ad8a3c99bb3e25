"""An instance's state as a snapshot record and back: plain values in the shape of the
`baton.snapshots.InstanceSnapshot` schema. A snapshot is a cache of the fold (the log stays
the truth), so `restore_instance(snapshot_instance(s)) == s` for every state the fold makes;
the property test over random histories holds it to that."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.domain.instance.state import InstanceState, LoopState, Results, StepState
from services.domain.kernel.statuses import InstanceStatus, StepStatus
from services.domain.language.workflow import shared_definition


def snapshot_instance(s: InstanceState) -> dict[str, Any]:
    return {
        "instance_id": s.instance_id,
        "workflow_id": s.workflow_id,
        "version": s.version,
        "definition": s.definition,
        "params": s.params,
        "run": s.run,
        "status": s.status.value,
        "timeout_at": s.timeout_at,
        "seq": s.seq,
        # A list, not a map: the steps keep their definition order.
        "steps": [_step_record(step_id, step) for step_id, step in s.steps.items()],
        "initiator": s.initiator,
        "started_at": s.started_at,
        "run_started_at": s.run_started_at,
        "failed_steps": list(s.failed_steps),
        "breakpoints": sorted(s.breakpoints),
        "workflow_breakpoints": sorted(s.workflow_breakpoints),
        "parent_instance_id": s.parent_instance_id,
        "parent_step_id": s.parent_step_id,
        "parent_attempt": s.parent_attempt,
        "depth": s.depth,
        "loop": s.loop,
    }


def restore_instance(r: Mapping[str, Any]) -> InstanceState:
    return InstanceState(
        instance_id=r["instance_id"],
        workflow_id=r["workflow_id"],
        version=r["version"],
        definition=shared_definition(r["definition"]),
        params=r["params"],
        run=r["run"],
        status=InstanceStatus(r["status"]),
        timeout_at=r["timeout_at"],
        seq=r["seq"],
        steps={step["step_id"]: _step_state(step) for step in r["steps"]},
        initiator=r["initiator"],
        started_at=r["started_at"],
        run_started_at=r["run_started_at"],
        failed_steps=tuple(r["failed_steps"]),
        breakpoints=frozenset(r["breakpoints"]),
        workflow_breakpoints=frozenset(r["workflow_breakpoints"]),
        parent_instance_id=r["parent_instance_id"],
        parent_step_id=r["parent_step_id"],
        parent_attempt=r["parent_attempt"],
        depth=r["depth"],
        loop=r["loop"],
    )


def _step_record(step_id: str, s: StepState) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "status": s.status.value,
        "attempt": s.attempt,
        "user_failures": s.user_failures,
        "platform_failures": s.platform_failures,
        "timeout_failures": s.timeout_failures,
        "retry_at": s.retry_at,
        "timeout_at": s.timeout_at,
        "wake_at": s.wake_at,
        "outputs": s.outputs,
        "released": s.released,
        "signal_wait": s.signal_wait,
        "signals_matched": sorted(s.signals_matched),
        "signals_met": s.signals_met,
        "loop": None if s.loop is None else _loop_record(s.loop),
    }


def _step_state(r: Mapping[str, Any]) -> StepState:
    loop = r["loop"]
    return StepState(
        status=StepStatus(r["status"]),
        attempt=r["attempt"],
        user_failures=r["user_failures"],
        platform_failures=r["platform_failures"],
        timeout_failures=r["timeout_failures"],
        retry_at=r["retry_at"],
        timeout_at=r["timeout_at"],
        wake_at=r["wake_at"],
        outputs=r["outputs"],
        released=r["released"],
        signal_wait=r["signal_wait"],
        signals_matched=frozenset(r["signals_matched"]),
        signals_met=r["signals_met"],
        loop=None if loop is None else _loop_state(loop),
    )


def _loop_record(s: LoopState) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    node = s.results
    while node is not None:  # newest first, as the fold keeps them
        (index, outputs), node = node
        results.append({"index": index, "outputs": outputs})
    return {
        # The items came from JSON (LoopStarted.items) and go back to it.
        "items": None if s.items is None else json.dumps(list(s.items), separators=(",", ":")),
        "started": s.started,
        "running": sorted(s.running),
        "counts": dict(s.counts),
        "results": results,
        "results_bytes": s.results_bytes,
        "results_truncated": s.results_truncated,
        "last_outputs": s.last_outputs,
        "first_failure": s.first_failure,
    }


def _loop_state(r: Mapping[str, Any]) -> LoopState:
    results: Results = None
    for result in reversed(r["results"]):  # rebuilt oldest first: the head is the newest
        results = ((result["index"], result["outputs"]), results)
    items = r["items"]
    return LoopState(
        items=None if items is None else tuple(json.loads(items)),
        started=r["started"],
        running=frozenset(r["running"]),
        counts=dict(r["counts"]),
        results=results,
        results_bytes=r["results_bytes"],
        results_truncated=r["results_truncated"],
        last_outputs=r["last_outputs"],
        first_failure=r["first_failure"],
    )
