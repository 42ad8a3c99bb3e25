"""The signal aggregate's commands (one aggregate per signal name, keyed `signal:<name>`;
see signals.py). The commands an instance or a workflow receives from it are in commands.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SetSignalTriggers:
    """The workflow's signal triggers on this name, as its active version has them (an empty
    list: none, e.g. after deactivation). Sent by the workflow."""

    signal_name: str
    workflow_id: str
    triggers: str  # JSON list of [trigger index, match, dedup param names]


@dataclass(frozen=True, slots=True)
class SendSignal:
    """A signal arrives: by API, or from a step's signal outputs. `request_id` dedups it."""

    signal_name: str
    request_id: str
    params: str  # JSON object of strings and longs
    payload: str  # JSON
    sender: str


@dataclass(frozen=True, slots=True)
class AwaitSignal:
    """A step waits for a signal of this name matching `match` (sent by the instance)."""

    signal_name: str
    instance_id: str
    step_id: str
    wait: int
    index: int
    match: str  # the evaluated conditions (JSON, see signal_specs.match_to_json)


@dataclass(frozen=True, slots=True)
class CancelSignalWait:
    """The step no longer waits (bypassed, stopped, skipped, its run ended)."""

    signal_name: str
    instance_id: str
    step_id: str
    wait: int
