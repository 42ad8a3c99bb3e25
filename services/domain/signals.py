"""decide for the signal aggregate, one per signal name (keyed `signal:<name>`).

A signal arrives (`SendSignal`, from the API or a step's signal outputs) and is recorded once
per request id (`SignalReceived`). The same decision wakes every step waiting for a signal of
that name whose params it meets (`DeliverSignal` to each, in the same transaction). A step that
starts to wait (`AwaitSignal`) is answered at once from the newest signals kept, or waits
(`SignalAwaited`) until one arrives. Nothing polls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.domain.commands import (
    AwaitSignal,
    CancelSignalWait,
    Command,
    DeliverSignal,
    Rejected,
    SendSignal,
    SignalCommand,
    signal_key,
)
from services.domain.events import (
    Event,
    EventPayload,
    SignalAwaited,
    SignalReceived,
    SignalWaitCancelled,
)
from services.domain.evolve import evolve_signal
from services.domain.signal_specs import (
    MAX_SIGNAL_PARAMS,
    MAX_SIGNAL_PAYLOAD_BYTES,
    match_from_json,
    satisfies,
    signal_value_fault,
)
from services.domain.state import SignalState


@dataclass
class SignalDraft:
    state: SignalState | None
    name: str
    now: int
    caused_at: int | None
    events: list[Event] = field(default_factory=list)
    sent: list[Command] = field(default_factory=list)

    def emit(self, payload: EventPayload) -> None:
        seq = (self.state.seq if self.state else 0) + 1
        event = Event(
            event_id=f"{signal_key(self.name)}:{seq}",
            instance_id=None,
            workflow_id="",
            seq=seq,
            occurred_at=self.now,
            payload=payload,
            caused_at=self.caused_at,
            signal_name=self.name,
        )
        self.state = evolve_signal(self.state, event)
        self.events.append(event)

    def send(self, command: Command) -> None:
        self.sent.append(command)


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
        params = check_signal(json.loads(c.params), c.payload)
        json.loads(c.payload)
    except json.JSONDecodeError as err:
        raise Rejected(f"params or payload are not JSON: {err}") from None
    seq = (d.state.count if d.state else 0) + 1
    woken: list[tuple[str, str, int, int]] = []
    for (iid, sid, wait), deps in d.state.waits.items() if d.state else ():
        woken.extend((iid, sid, wait, index) for index, m in deps if satisfies(m, params))
    woken.sort()
    d.emit(SignalReceived(seq, c.request_id, c.params, c.payload, c.sender, json.dumps(woken)))
    for iid, sid, wait, index in woken:
        d.send(DeliverSignal(iid, sid, wait, index, c.signal_name, seq, c.params))


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
}


def decide_for_signal(
    state: SignalState | None, command: SignalCommand, now: int, caused_at: int | None = None
) -> SignalDraft:
    """The signal aggregate's rules: the draft holds the events (already folded into its
    state) and the commands they send."""
    handler = _RULES.get(type(command))
    if handler is None:
        raise TypeError(f"no signal rule for {type(command).__name__}")
    d = SignalDraft(state, command.signal_name, now, caused_at)
    handler(d, command)
    return d
