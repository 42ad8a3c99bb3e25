"""evolve for the signal aggregate: one case per event, no rule."""

from __future__ import annotations

import json
from dataclasses import replace

from services.domain.kernel.errors import CorruptLog
from services.domain.kernel.window import DedupWindow
from services.domain.language.signal_specs import match_from_json
from services.domain.protocol.events import (
    Event,
    SignalAwaited,
    SignalReceived,
    SignalTriggersSet,
    SignalWaitCancelled,
)
from services.domain.signal.state import (
    REQUEST_ID_WINDOW,
    TRIGGER_KEY_WINDOW,
    SignalRecord,
    SignalState,
)

# A signal name keeps its newest signals for dependencies that start waiting later.
MAX_RECENT_SIGNALS = 1000


def evolve_signal(state: SignalState | None, event: Event) -> SignalState:
    p = event.payload
    if state is not None and event.seq != state.seq + 1:
        raise CorruptLog(f"{event.event_id}: seq {event.seq} after {state.seq}")
    name = event.signal_name
    if name is None:
        raise CorruptLog(f"{event.event_id}: {event.type} without a signal name")
    s = replace(state or SignalState(name, 0), seq=event.seq)
    if isinstance(p, SignalReceived):
        params = json.loads(p.params)
        record = SignalRecord(p.signal_seq, params, p.params)
        recent = (*s.recent[-(MAX_RECENT_SIGNALS - 1) :], record)
        waits = s.waits.mutate()
        for iid, sid, wait, index in json.loads(p.woken):
            key = (iid, sid, wait)
            left = tuple(dep for dep in waits.get(key, ()) if dep[0] != index)
            if left:
                waits[key] = left
            elif key in waits:
                del waits[key]
        return replace(
            s,
            count=p.signal_seq,
            recent=recent,
            request_ids=s.request_ids.add(
                p.request_id, p.signal_seq, event.occurred_at, REQUEST_ID_WINDOW
            ),
            waits=waits.finish(),
            trigger_keys=_started_keys(s.trigger_keys, p.started, event.occurred_at),
        )
    if isinstance(p, SignalTriggersSet):
        triggers = {
            index: (index, match_from_json(json.dumps(match)), tuple(dedup))
            for index, match, dedup in json.loads(p.triggers)
        }
        by_workflow = dict(s.triggers)
        if triggers:
            by_workflow[p.workflow_id] = tuple(triggers[i] for i in sorted(triggers))
        else:
            by_workflow.pop(p.workflow_id, None)
        return replace(s, triggers=by_workflow)
    if isinstance(p, SignalAwaited):
        key = (p.instance_id, p.step_id, p.wait)
        deps = (*s.waits.get(key, ()), (p.index, match_from_json(p.match)))
        return replace(s, waits=s.waits.set(key, deps))
    if isinstance(p, SignalWaitCancelled):
        key = (p.instance_id, p.step_id, p.wait)
        return replace(s, waits=s.waits.delete(key)) if key in s.waits else s
    raise CorruptLog(f"{event.type} is not a signal event")


def _started_keys(keys: DedupWindow[str], started: str, at: int) -> DedupWindow[str]:
    for _wid, _index, instance_id, key in json.loads(started):
        if key is not None:
            keys = keys.add(key, instance_id, at, TRIGGER_KEY_WINDOW)
    return keys
