"""decide for the signal aggregate, one per signal name (keyed `signal:<name>`).

A signal arrives (`SendSignal`, from the API or a step's signal outputs) and is recorded once
per request id (`SignalReceived`). The same decision wakes every step waiting for a signal of
that name whose params it meets (`DeliverSignal` to each, in the same transaction). A step that
starts to wait (`AwaitSignal`) is answered at once from the newest signals kept, or waits
(`SignalAwaited`) until one arrives. Nothing polls.

A workflow's signal triggers on this name are set by the workflow as its active version
changes (`SignalTriggersSet`); a signal that meets one starts an instance (`TriggerInstance`
to the workflow, whose id is derived from the signal), at most once per dedup key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from services.domain.kernel.documents import load_json
from services.domain.kernel.errors import DefinitionError, Rejected
from services.domain.language.signal_specs import (
    MAX_SIGNAL_PARAMS,
    MAX_SIGNAL_PAYLOAD_BYTES,
    match_from_json,
    match_to_json,
    satisfies,
    signal_value_fault,
)
from services.domain.protocol.aggregate import Decision, Draft, apply_rule
from services.domain.protocol.commands import (
    AwaitSignal,
    CancelSignalWait,
    DeliverSignal,
    SendSignal,
    SetSignalTriggers,
    SignalCommand,
    TriggerInstance,
)
from services.domain.protocol.events import (
    Event,
    EventPayload,
    SignalAwaited,
    SignalReceived,
    SignalTriggersSet,
    SignalWaitCancelled,
)
from services.domain.protocol.routing import derived_instance_id, signal_key
from services.domain.signal.evolve import evolve_signal
from services.domain.signal.state import SignalState


class SignalDraft(Draft[SignalState]):
    def __init__(
        self, state: SignalState | None, name: str, now: int, caused_at: int | None
    ) -> None:
        super().__init__(state, signal_key(name), now, caused_at)
        self.name = name

    def envelope(self, payload: EventPayload, seq: int) -> Event:
        return Event(
            event_id=f"{signal_key(self.name)}:{seq}",
            instance_id=None,
            workflow_id="",
            seq=seq,
            occurred_at=self.now,
            payload=payload,
            caused_at=self.caused_at,
            signal_name=self.name,
        )

    def evolve(self, state: SignalState | None, event: Event) -> SignalState:
        return evolve_signal(state, event)


def check_signal(params: Any, payload_json: str) -> dict[str, Any]:
    """The params of a signal, or Rejected saying what is wrong (the API checks the same)."""
    if not isinstance(params, dict):
        raise Rejected("a signal's params are a JSON object")
    if len(params) > MAX_SIGNAL_PARAMS:
        raise Rejected(f"a signal has at most {MAX_SIGNAL_PARAMS} params")
    for name, value in params.items():
        fault = signal_value_fault(value)
        if fault:
            raise Rejected(f"param {name!r}: {fault}")
    if len(payload_json) > MAX_SIGNAL_PAYLOAD_BYTES:
        raise Rejected(f"a signal payload is at most {MAX_SIGNAL_PAYLOAD_BYTES} bytes")
    return params


def _send(d: SignalDraft, c: SendSignal) -> None:
    if d.state is not None and c.request_id in d.state.request_ids:
        return  # a duplicate request: the signal was received once
    try:
        # Bounded in depth and size: the payload is recorded, and every reader decodes it.
        params = check_signal(load_json(c.params), c.payload)
        load_json(c.payload)
    except DefinitionError as err:
        raise Rejected(f"params or payload: {err}") from None
    except json.JSONDecodeError as err:
        raise Rejected(f"params or payload are not JSON: {err}") from None
    seq = (d.state.count if d.state else 0) + 1
    woken: list[tuple[str, str, int, int]] = []
    for (iid, sid, wait), deps in d.state.waits.items() if d.state else ():
        woken.extend((iid, sid, wait, index) for index, m in deps if satisfies(m, params))
    woken.sort()
    started = _triggered(d, seq, params)
    d.emit(
        SignalReceived(
            seq,
            c.request_id,
            c.params,
            c.payload,
            c.sender,
            json.dumps(woken),
            json.dumps(started),
        )
    )
    for iid, sid, wait, index in woken:
        d.send(DeliverSignal(iid, sid, wait, index, c.signal_name, seq, c.params))
    for wid, _index, iid, _key in started:
        d.send(TriggerInstance(wid, iid, c.params, f"signal:{d.name}#{seq}"))


def _triggered(d: SignalDraft, seq: int, params: dict[str, Any]) -> list[list[Any]]:
    """The signal triggers this signal fires: [workflow id, index, instance id, dedup key]."""
    s = d.state
    if s is None:
        return []
    started: list[list[Any]] = []
    keys: set[str] = set()
    for wid, triggers in sorted(s.triggers.items()):
        for index, match, dedup in triggers:
            if not satisfies(match, params):
                continue
            key = None
            if dedup:
                key = json.dumps([wid, index, [params.get(p) for p in dedup]])
                if key in s.trigger_keys or key in keys:
                    continue  # the same values started an instance already
                keys.add(key)
            iid = derived_instance_id(wid, f"signal\0{d.name}\0{seq}\0{index}")
            started.append([wid, index, iid, key])
    return started


def _set_triggers(d: SignalDraft, c: SetSignalTriggers) -> None:
    current = d.state.triggers.get(c.workflow_id, ()) if d.state else ()
    shown = [[i, json.loads(match_to_json(m)), list(dedup)] for i, m, dedup in current]
    if shown == json.loads(c.triggers):
        return  # unchanged (a version with the same triggers, a repeated command)
    d.emit(SignalTriggersSet(c.workflow_id, c.triggers))


def _await(d: SignalDraft, c: AwaitSignal) -> None:
    s = d.state
    key = (c.instance_id, c.step_id, c.wait)
    if s is not None and any(index == c.index for index, _ in s.waits.get(key, ())):
        return  # a duplicate: it waits already
    match = match_from_json(c.match)
    for record in reversed(s.recent if s else ()):
        if satisfies(match, record.params):
            # The newest signal that meets it: the step need not wait.
            d.send(
                DeliverSignal(
                    c.instance_id,
                    c.step_id,
                    c.wait,
                    c.index,
                    d.name,
                    record.seq,
                    record.params_json,
                )
            )
            return
    d.emit(SignalAwaited(c.instance_id, c.step_id, c.wait, c.index, c.match))


def _cancel(d: SignalDraft, c: CancelSignalWait) -> None:
    if d.state is not None and (c.instance_id, c.step_id, c.wait) in d.state.waits:
        d.emit(SignalWaitCancelled(c.instance_id, c.step_id, c.wait))


_RULES: dict[type, Callable[[SignalDraft, Any], None]] = {
    SendSignal: _send,
    AwaitSignal: _await,
    CancelSignalWait: _cancel,
    SetSignalTriggers: _set_triggers,
}


def decide_signal(
    state: SignalState | None, command: SignalCommand, now: int, caused_at: int | None = None
) -> Decision[SignalState]:
    """The signal aggregate's rules: the events (already folded into its state) and the
    commands they send."""
    d = SignalDraft(state, command.signal_name, now, caused_at)
    return apply_rule(_RULES, d, command).decision()
