"""The signal aggregate's events (see signals.py): a signal name's own history. Their
envelope names the signal (`signal_name`); they belong to no instance and no workflow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SignalReceived:
    """Signal number `signal_seq` of its name arrived. `woken`: the waits it met (JSON list of
    [instance id, step id, wait, index]), which end with it."""

    signal_seq: int
    request_id: str
    params: str
    payload: str
    sender: str
    woken: str
    # The signal triggers it fired: JSON list of [workflow id, trigger index, instance id,
    # dedup key or null].
    started: str = "[]"


@dataclass(frozen=True, slots=True)
class SignalTriggersSet:
    """A workflow's signal triggers on this name (JSON list of [index, match, dedup])."""

    workflow_id: str
    triggers: str


@dataclass(frozen=True, slots=True)
class SignalAwaited:
    """A step's dependency waits for a signal of this name that meets `match`."""

    instance_id: str
    step_id: str
    wait: int
    index: int
    match: str


@dataclass(frozen=True, slots=True)
class SignalWaitCancelled:
    """Every dependency of that wait stops waiting (the step no longer needs them)."""

    instance_id: str
    step_id: str
    wait: int
