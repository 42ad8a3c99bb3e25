"""Time triggers (cron) and the starts they and signal triggers ask for."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from services.domain.kernel.documents import dumps
from services.domain.kernel.errors import DefinitionError, Rejected
from services.domain.language.evaluation import check_overrides
from services.domain.language.signal_specs import match_to_json
from services.domain.language.triggers import jitter_of, next_time, trigger_params
from services.domain.language.workflow import load_workflow
from services.domain.protocol.commands import (
    FireWorkflowTimers,
    SetSignalTriggers,
    StartInstance,
    TriggerInstance,
)
from services.domain.protocol.events import (
    TimeTriggerFired,
    TimeTriggerScheduled,
)
from services.domain.protocol.routing import derived_instance_id
from services.domain.workflow.draft import WorkflowDraft
from services.domain.workflow.state import WorkflowState


def arm_triggers(d: WorkflowDraft, before: int | None) -> None:
    """The active version changed (from `before`): schedule its time triggers (the fold
    dropped the old ones), and tell every signal named by the old or the new version's
    signal triggers what the workflow now listens for there (nothing, once deactivated)."""
    s = d.state
    assert s is not None
    new = None if s.active_version is None else load_workflow(s.definitions[s.active_version])
    if new is not None:
        assert s.active_version is not None
        for index, trigger in enumerate(new.time_triggers):
            at = next_time(trigger, new.time_zone, d.now)
            fire_at = at + jitter_of(trigger, s.workflow_id, index, at)
            d.emit(TimeTriggerScheduled(s.active_version, index, at, fire_at))
    names: dict[str, list[Any]] = {}
    if before is not None:
        for old in load_workflow(s.definitions[before]).signal_triggers:
            names.setdefault(old.name, [])
    for index, on_signal in enumerate(new.signal_triggers if new is not None else ()):
        match = json.loads(match_to_json(on_signal.evaluated()))
        names.setdefault(on_signal.name, []).append([index, match, list(on_signal.dedup)])
    for name, triggers in sorted(names.items()):
        d.send(SetSignalTriggers(name, s.workflow_id, json.dumps(triggers)))


def _fire_timers(d: WorkflowDraft, c: FireWorkflowTimers) -> None:
    """Each time trigger that is due fires once: it records the firing with the next time,
    and starts the active version (through the run strategy, like any start)."""
    s = d.state
    if s is None or s.active_version is None or not s.cron:
        return
    version = s.active_version
    definition = s.definitions[version]
    wf = load_workflow(definition)
    for index, (scheduled_for, fire_at) in sorted(s.cron.items()):
        if fire_at > d.now:
            continue
        trigger = wf.time_triggers[index]
        # The next time after now: times missed while no engine ran are skipped, not
        # caught up (one late firing stands for them).
        nxt = next_time(trigger, wf.time_zone, d.now)
        iid = derived_instance_id(s.workflow_id, f"cron\0{index}\0{scheduled_for}")
        jitter = jitter_of(trigger, s.workflow_id, index, nxt)
        d.emit(TimeTriggerFired(version, index, scheduled_for, iid, nxt, nxt + jitter))
        d.send(
            StartInstance(
                instance_id=iid,
                workflow_id=s.workflow_id,
                version=version,
                definition=definition,
                params="{}",
                initiator=f"cron:{trigger.cron}",
                idempotency_key=None,
                admitted=False,
            )
        )


def _trigger_instance(d: WorkflowDraft, c: TriggerInstance) -> None:
    """A signal trigger matched: start the active version with the signal's params that the
    workflow declares. Params it cannot take are rejected (the command is dead-lettered with
    the reason), never dropped silently."""
    s = d.state
    if s is None or s.active_version is None:
        return  # deactivated since: its triggers are being withdrawn
    definition = s.definitions[s.active_version]
    wf = load_workflow(definition)
    params = trigger_params(wf.params, json.loads(c.params))
    try:
        check_overrides(wf, params)
    except DefinitionError as err:
        raise Rejected(f"signal trigger of {s.workflow_id!r}: {err}") from None
    d.send(
        StartInstance(
            instance_id=c.instance_id,
            workflow_id=s.workflow_id,
            version=s.active_version,
            definition=definition,
            params=dumps(params),
            initiator=c.initiator,
            idempotency_key=None,
            admitted=False,
        )
    )


def next_workflow_deadline(state: WorkflowState) -> int | None:
    """The earliest time at which `FireWorkflowTimers` has something to do."""
    return min((fire_at for _, fire_at in state.cron.values()), default=None)


RULES: dict[type, Callable[[WorkflowDraft, Any], None]] = {
    FireWorkflowTimers: _fire_timers,
    TriggerInstance: _trigger_instance,
}
