"""Triggers: time triggers fire the active version once per cron time (recorded, so a
replay or a new engine never fires twice), with a jitter derived, not drawn; signal
triggers start it when a matching signal arrives, at most once per dedup key; deactivation
stops both. Given events (a world of aggregates), when a command, then events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.domain.kernel.errors import DefinitionError
from services.domain.language.parse import parse_workflow
from services.domain.language.triggers import jitter_of, next_time
from services.domain.protocol.commands import (
    ActivateWorkflow,
    DeactivateWorkflow,
    FireWorkflowTimers,
    PushWorkflow,
    SendSignal,
)
from services.domain.signal.decide import decide_signal
from services.domain.workflow.decide import decide_workflow
from services.domain.workflow.timers import next_workflow_deadline
from tests.unit.domain.instance.test_subworkflows import World


def micros(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


T0 = micros("2025-11-21T10:17:00")


def nightly(**fields: Any) -> dict[str, Any]:
    wf: dict[str, Any] = {
        "id": "nightly",
        "time_zone": "Europe/Amsterdam",
        "run_strategy": {"rule": "PARALLEL"},
        "time_triggers": [{"cron": "30 2 * * *"}],
        "params": {"table": "sales"},
        "steps": [{"id": "load", "type": "noop"}],
    }
    wf.update(fields)
    return wf


class Clock(World):
    """A world whose decisions happen at `now`."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0

    def decide_workflow(self, c: Any) -> list[str]:
        wd = decide_workflow(self.workflows.get(c.workflow_id), c, self.now)
        if wd.state is not None:
            self.workflows[c.workflow_id] = wd.state
        log = [f"{c.workflow_id} {e.type}" for e in wd.events]
        for sent in wd.sent:
            log += self.when(sent)
        return log


def test_activation_schedules_the_next_cron_time_in_the_workflows_zone() -> None:
    w = Clock()
    text = parse_workflow(nightly()).to_json()
    w.decide_workflow(PushWorkflow("nightly", text))
    s = w.workflows["nightly"]
    # 02:30 in Amsterdam (UTC+1 in November) is 01:30 UTC, the next day.
    assert s.cron == {0: (micros("2025-11-22T01:30:00"), micros("2025-11-22T01:30:00"))}
    assert next_workflow_deadline(s) == micros("2025-11-22T01:30:00")


def test_a_due_trigger_fires_once_and_schedules_the_next_time() -> None:
    w = Clock()
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(nightly()).to_json()))
    w.now = micros("2025-11-22T01:30:00")
    log = w.decide_workflow(FireWorkflowTimers("nightly"))
    assert log[0] == "nightly TimeTriggerFired"
    started = [iid for iid, i in w.instances.items() if i.workflow_id == "nightly"]
    assert len(started) == 1
    instance = w.instances[started[0]]
    assert instance.initiator == "cron:30 2 * * *"
    assert started[0].startswith("nightly~")
    assert w.workflows["nightly"].cron[0][0] == micros("2025-11-23T01:30:00")
    # The same timer again (a replayed input, a second engine): nothing fires.
    assert w.decide_workflow(FireWorkflowTimers("nightly")) == []


def test_a_workflows_cron_state_stays_one_entry_per_trigger_however_often_it_fires() -> None:
    w = Clock()
    two = nightly(time_triggers=[{"cron": "@hourly"}, {"cron": "*/15 * * * *"}])
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(two).to_json()))
    fired = 0
    for _ in range(200):  # two days of firings
        w.now = min(fire_at for _cron, fire_at in w.workflows["nightly"].cron.values())
        fired += w.decide_workflow(FireWorkflowTimers("nightly")).count("nightly TimeTriggerFired")
        assert sorted(w.workflows["nightly"].cron) == [0, 1]  # the next time of each, only
    assert fired >= 200
    # Each firing started an instance (admitted up to PARALLEL's 20, the rest queued).
    started = [i for i in w.instances.values() if i.workflow_id == "nightly"]
    assert len(started) + len(w.workflows["nightly"].queue) == fired


def test_times_missed_while_no_engine_ran_fire_once_late() -> None:
    w = Clock()
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(nightly()).to_json()))
    w.now = micros("2025-11-25T09:00:00")  # three nights later
    log = w.decide_workflow(FireWorkflowTimers("nightly"))
    assert log.count("nightly TimeTriggerFired") == 1
    assert w.workflows["nightly"].cron[0][0] == micros("2025-11-26T01:30:00")


def test_jitter_delays_each_firing_by_a_derived_part_of_it() -> None:
    wf = parse_workflow(nightly(time_triggers=[{"cron": "@hourly", "jitter": "10m"}]))
    trigger = wf.time_triggers[0]
    at = next_time(trigger, "UTC", T0)
    assert at == micros("2025-11-21T11:00:00")
    delays = {jitter_of(trigger, "nightly", 0, at + h * 3_600_000_000) for h in range(24)}
    assert all(0 <= d <= 600_000_000 for d in delays)
    assert len(delays) > 1  # not one fixed delay
    assert jitter_of(trigger, "nightly", 0, at) == jitter_of(trigger, "nightly", 0, at)


def test_deactivation_stops_the_triggers_and_activation_arms_them_again() -> None:
    w = Clock()
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(nightly()).to_json()))
    w.decide_workflow(DeactivateWorkflow("nightly"))
    assert w.workflows["nightly"].cron == {}
    w.now = micros("2025-11-22T01:30:00")
    assert w.decide_workflow(FireWorkflowTimers("nightly")) == []
    log = w.decide_workflow(ActivateWorkflow("nightly"))
    assert log == ["nightly WorkflowActivated", "nightly TimeTriggerScheduled"]


def test_an_invalid_cron_or_zone_is_rejected_at_push_with_its_path() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_workflow(
            nightly(time_triggers=[{"cron": "0 25 * * *"}, {"cron": "@daily", "time_zone": "Mars"}])
        )
    paths = [p for p, _ in err.value.faults]
    assert paths == ["time_triggers[0].cron", "time_triggers[1].time_zone"]
    assert "invalid cron '0 25 * * *'" in str(err.value)


ON_SIGNAL = {"name": "table_ready", "match": {"table": "sales"}, "dedup": ["day"]}


def signal(params: dict[str, Any], request_id: str) -> SendSignal:
    return SendSignal("table_ready", request_id, json.dumps(params), "null", "api:t")


def test_a_matching_signal_starts_the_active_version_with_its_params() -> None:
    w = Clock()
    wf = nightly(time_triggers=[], signal_triggers=[ON_SIGNAL])
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(wf).to_json()))
    [(index, match, dedup)] = w.signals["table_ready"].triggers["nightly"]
    assert (index, [(n, op.value, v) for n, op, v in match], dedup) == (
        0,
        [("table", "=", "sales")],
        ("day",),
    )
    w.when(signal({"table": "orders", "day": 1}, "r0"))  # no match
    assert not [i for i in w.instances.values() if i.workflow_id == "nightly"]
    w.when(signal({"table": "sales", "day": 1}, "r1"))
    w.when(signal({"table": "sales", "day": 1}, "r2"))  # the same dedup key
    w.when(signal({"table": "sales", "day": 2}, "r3"))
    started = [i for i in w.instances.values() if i.workflow_id == "nightly"]
    assert len(started) == 2
    assert {i.initiator for i in started} == {"signal:table_ready#2", "signal:table_ready#4"}
    assert all(json.loads(i.params) == {"table": "sales"} for i in started)


def test_a_dedup_key_is_remembered_for_at_least_30_days_not_for_ever() -> None:
    day = 24 * 3600 * 1_000_000
    w = Clock()
    wf = nightly(time_triggers=[], signal_triggers=[ON_SIGNAL])
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(wf).to_json()))
    w.when(signal({"table": "sales", "day": 1}, "r1"))
    w.now += 29 * day
    w.when(signal({"table": "sales", "day": 1}, "r2"))  # within the window: no start
    for n, request_id in ((2, "r3"), (3, "r4")):  # two generations of the window later
        w.now += 31 * day
        w.when(signal({"table": "sales", "day": n}, request_id))
    w.when(signal({"table": "sales", "day": 1}, "r5"))  # forgotten: it starts again
    started = [i for i in w.instances.values() if i.workflow_id == "nightly"]
    assert sorted(i.initiator for i in started) == [
        "signal:table_ready#1",
        "signal:table_ready#3",
        "signal:table_ready#4",
        "signal:table_ready#5",
    ]


def test_deactivation_withdraws_the_signal_triggers() -> None:
    w = Clock()
    wf = nightly(time_triggers=[], signal_triggers=[ON_SIGNAL])
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(wf).to_json()))
    w.decide_workflow(DeactivateWorkflow("nightly"))
    assert "nightly" not in w.signals["table_ready"].triggers
    w.when(signal({"table": "sales", "day": 1}, "r1"))
    assert not [i for i in w.instances.values() if i.workflow_id == "nightly"]


def test_a_signal_triggers_match_values_are_literals() -> None:
    with pytest.raises(DefinitionError, match="a signal trigger matches literal values"):
        parse_workflow(nightly(signal_triggers=[{"name": "s", "match": {"table": "${table}"}}]))


def test_set_triggers_twice_records_once() -> None:
    from services.domain.protocol.commands import SetSignalTriggers

    c = SetSignalTriggers("s", "wf", '[[0,[["a","=",1]],[]]]')
    first = decide_signal(None, c, 0)
    assert [e.type for e in first.events] == ["SignalTriggersSet"]
    assert decide_signal(first.state, c, 0).events == []


def test_a_long_signal_value_starts_a_declared_string_param_as_its_digits() -> None:
    """Signal params are strings or longs, and `baton signal -p day=20251121` sends a long:
    a string param takes it as its decimal text, rather than the start being dead-lettered
    (`params.day: expected a string`)."""
    w = Clock()
    wf = nightly(time_triggers=[], signal_triggers=[ON_SIGNAL], params={"day": "unknown"})
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(wf).to_json()))
    w.when(signal({"table": "sales", "day": 20251121}, "r1"))
    [started] = [i for i in w.instances.values() if i.workflow_id == "nightly"]
    assert json.loads(started.params) == {"day": "20251121"}


def test_a_signal_value_that_fits_no_declared_param_is_still_rejected() -> None:
    from services.domain.kernel.errors import Rejected
    from services.domain.protocol.commands import TriggerInstance

    w = Clock()
    wf = nightly(time_triggers=[], signal_triggers=[ON_SIGNAL], params={"rows": 1})
    w.decide_workflow(PushWorkflow("nightly", parse_workflow(wf).to_json()))
    trigger = TriggerInstance("nightly", "n-1", json.dumps({"rows": "many"}), "signal:s#1")
    with pytest.raises(Rejected, match=r"params\.rows: expected a long"):
        decide_workflow(w.workflows["nightly"], trigger, T0)


def test_a_trigger_matching_a_declared_param_with_a_value_it_cannot_take_is_refused() -> None:
    """Such a trigger could only ever start with a value the start rejects."""
    trigger = {"name": "table_ready", "match": {"rows": "many"}}
    with pytest.raises(DefinitionError) as err:
        parse_workflow(nightly(params={"rows": 1}, signal_triggers=[trigger]))
    [(path, message)] = err.value.faults
    assert path == "signal_triggers[0].match.rows"
    assert "the param rows is a long" in message
