"""A workflow's state as a snapshot record and back (`baton.snapshots.WorkflowSnapshot`);
`restore_workflow(snapshot_workflow(s)) == s` for every state the fold makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import immutables

from services.domain.kernel.fifo import Fifo
from services.domain.language.workflow import RunStrategy
from services.domain.protocol.events import InstanceQueued
from services.domain.workflow.state import WorkflowState


def snapshot_workflow(s: WorkflowState) -> dict[str, Any]:
    strategy = s.run_strategy
    return {
        "workflow_id": s.workflow_id,
        "latest_version": s.latest_version,
        "seq": s.seq,
        "active_version": s.active_version,
        "run_strategy": None
        if strategy is None
        else {"rule": strategy.rule.value, "max": strategy.max},
        "running": sorted(s.running.keys()),
        "queue": [
            {
                "instance_id": q.instance_id,
                "version": q.version,
                "definition": q.definition,
                "params": q.params,
                "initiator": q.initiator,
                "idempotency_key": q.idempotency_key,
            }
            for q in s.queue
        ],
        "blocked_by": s.blocked_by,
        "definitions": [{"version": v, "definition": d} for v, d in s.definitions.items()],
        "cron": [
            {"index": index, "cron_time": cron_time, "fire_time": fire_time}
            for index, (cron_time, fire_time) in s.cron.items()
        ],
        "breakpoints": sorted(s.breakpoints),
    }


def restore_workflow(r: Mapping[str, Any]) -> WorkflowState:
    strategy = r["run_strategy"]
    return WorkflowState(
        workflow_id=r["workflow_id"],
        latest_version=r["latest_version"],
        seq=r["seq"],
        active_version=r["active_version"],
        run_strategy=None
        if strategy is None
        else RunStrategy.model_validate({"rule": strategy["rule"], "max": strategy["max"]}),
        running=immutables.Map(dict.fromkeys(r["running"])),
        queue=Fifo.of(
            (
                InstanceQueued(
                    instance_id=q["instance_id"],
                    version=q["version"],
                    definition=q["definition"],
                    params=q["params"],
                    initiator=q["initiator"],
                    idempotency_key=q["idempotency_key"],
                )
                for q in r["queue"]
            ),
            key=lambda q: q.instance_id,
        ),
        blocked_by=r["blocked_by"],
        definitions={d["version"]: d["definition"] for d in r["definitions"]},
        cron={c["index"]: (c["cron_time"], c["fire_time"]) for c in r["cron"]},
        breakpoints=frozenset(r["breakpoints"]),
    )
