"""A signal name's state as a snapshot record and back (`baton.snapshots.SignalSnapshot`);
`restore_signal(snapshot_signal(s)) == s` for every state the fold makes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import immutables

from services.domain.kernel.window import DedupWindow
from services.domain.language.signal_specs import match_from_json, match_to_json
from services.domain.signal.state import SignalRecord, SignalState


def snapshot_signal(s: SignalState) -> dict[str, Any]:
    return {
        "name": s.name,
        "seq": s.seq,
        "count": s.count,
        # A record's params are its params_json, parsed: only the text is kept.
        "recent": [{"seq": r.seq, "params_json": r.params_json} for r in s.recent],
        **_window_fields("request_ids", s.request_ids),
        "waits": [
            {
                "instance_id": instance_id,
                "step_id": step_id,
                "wait": wait,
                "dependencies": [
                    {"index": index, "match": match_to_json(match)} for index, match in deps
                ],
            }
            for (instance_id, step_id, wait), deps in s.waits.items()
        ],
        "triggers": [
            {
                "workflow_id": workflow_id,
                "triggers": [
                    {"index": index, "match": match_to_json(match), "dedup": list(dedup)}
                    for index, match, dedup in triggers
                ],
            }
            for workflow_id, triggers in s.triggers.items()
        ],
        **_window_fields("trigger_keys", s.trigger_keys),
    }


def _window_fields(name: str, window: DedupWindow[Any]) -> dict[str, Any]:
    return {
        name: dict(window.current.items()),
        f"{name}_previous": dict(window.previous.items()),
        f"{name}_since": window.since,
    }


def _window(r: Mapping[str, Any], name: str) -> DedupWindow[Any]:
    # A record of schema v1 has only `name` (every key, for ever): its defaults make it one
    # generation begun at 0, which the next add moves to the previous generation.
    return DedupWindow(
        immutables.Map(r[name]), immutables.Map(r[f"{name}_previous"]), r[f"{name}_since"]
    )


def restore_signal(r: Mapping[str, Any]) -> SignalState:
    return SignalState(
        name=r["name"],
        seq=r["seq"],
        count=r["count"],
        recent=tuple(
            SignalRecord(x["seq"], json.loads(x["params_json"]), x["params_json"])
            for x in r["recent"]
        ),
        request_ids=_window(r, "request_ids"),
        waits=immutables.Map(
            {
                (w["instance_id"], w["step_id"], w["wait"]): tuple(
                    (d["index"], match_from_json(d["match"])) for d in w["dependencies"]
                )
                for w in r["waits"]
            }
        ),
        triggers={
            t["workflow_id"]: tuple(
                (x["index"], match_from_json(x["match"]), tuple(x["dedup"])) for x in t["triggers"]
            )
            for t in r["triggers"]
        },
        trigger_keys=_window(r, "trigger_keys"),
    )
