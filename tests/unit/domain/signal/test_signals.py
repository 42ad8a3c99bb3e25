"""Signals: a step waits for its signal dependencies before it starts, woken by the signal's
arrival (never by polling); a step sends its signal outputs when it succeeds; a user may
bypass the wait. Given events (a world of aggregates), when a command, then events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.domain.kernel.errors import DefinitionError, Rejected
from services.domain.kernel.statuses import InstanceStatus, StepStatus
from services.domain.language.parse import parse_workflow
from services.domain.language.signal_specs import SignalOperator, satisfies
from services.domain.protocol.commands import (
    AwaitSignal,
    BypassSignals,
    ReportAttemptSucceeded,
    SendSignal,
    StopStep,
)
from tests.unit.domain.instance.test_subworkflows import World

P = "waits~1"


def waiter(**load: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "load",
        "type": "shell",
        "command": "true",
        "signal_dependencies": [
            {
                "name": "table_ready",
                "match": {"table": "${table}", "day": {"op": ">=", "value": 20251120}},
            }
        ],
    }
    step.update(load)
    return {
        "id": "waits",
        "params": {"table": "sales"},
        "steps": [{"id": "extract", "type": "noop", "next": ["load"]}, step],
    }


def signal(params: dict[str, Any], request_id: str = "r1", name: str = "table_ready") -> SendSignal:
    return SendSignal(name, request_id, json.dumps(params), "null", "api:test")


def started(w: World, definition: dict[str, Any]) -> None:
    w.push(definition)
    w.start(definition["id"], P)
    w.when(ReportAttemptSucceeded(P, "extract", 1, "{}"))  # `load` is next


def test_a_step_waits_for_its_signal_and_starts_when_a_matching_one_arrives() -> None:
    w = World()
    started(w, waiter())
    assert w.step(P, "extract") is StepStatus.SUCCEEDED
    assert w.step(P, "load") is StepStatus.WAITING_FOR_SIGNALS
    wait = w.instances[P].steps["load"].signal_wait
    assert wait is not None
    assert list(w.signals["table_ready"].waits) == [(P, "load", wait)]

    # Not a match: another table, an earlier day, a day given as a string.
    assert w.when(signal({"table": "orders", "day": 20251121}, "r1")) == [
        "signal:table_ready SignalReceived"
    ]
    w.when(signal({"table": "sales", "day": 20251119}, "r2"))
    w.when(signal({"table": "sales", "day": "20251121"}, "r3"))
    assert w.step(P, "load") is StepStatus.WAITING_FOR_SIGNALS

    log = w.when(signal({"table": "sales", "day": 20251121}, "r4"))
    assert log == [
        "signal:table_ready SignalReceived",
        f"{P} StepSignalMatched",
        f"{P} StepAttemptCreated",
    ]
    assert w.step(P, "load") is StepStatus.STARTING
    assert not w.signals["table_ready"].waits  # the wait ended with its match


def test_a_signal_that_arrived_before_the_wait_meets_it_at_once() -> None:
    w = World()
    w.push(waiter())
    w.when(signal({"table": "sales", "day": 20251120}))
    w.start("waits", P)
    w.when(ReportAttemptSucceeded(P, "extract", 1, "{}"))
    assert w.step(P, "load") is StepStatus.STARTING
    matched = [e for e in w.log if e.endswith("StepSignalMatched")]
    assert matched == [f"{P} StepSignalMatched"]
    assert not w.signals["table_ready"].waits  # answered from the signals kept: no wait


def test_a_request_id_sent_twice_is_one_signal() -> None:
    w = World()
    w.when(signal({"table": "sales"}, "same"))
    assert w.when(signal({"table": "sales"}, "same")) == []
    assert w.signals["table_ready"].count == 1


HOUR = 3600 * 1_000_000


def test_a_request_id_is_remembered_for_at_least_a_day_not_for_ever() -> None:
    w = World()
    w.when(signal({"table": "sales"}, "same"))
    w.now += 23 * HOUR
    assert w.when(signal({"table": "sales"}, "same")) == []  # a retry within the window
    # Two generations of the window later the id is forgotten: the same id is a new signal.
    for request_id in ("r2", "r3"):
        w.now += 25 * HOUR
        w.when(signal({"table": "sales"}, request_id))
    assert "same" not in w.signals["table_ready"].request_ids
    assert w.when(signal({"table": "sales"}, "same")) == ["signal:table_ready SignalReceived"]
    assert w.signals["table_ready"].count == 4


def test_a_signal_names_request_ids_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.domain.kernel.window import WindowBound
    from services.domain.signal import evolve

    monkeypatch.setattr(evolve, "REQUEST_ID_WINDOW", WindowBound(span_us=HOUR, max_keys=10))
    w = World()
    for i in range(100):  # all within the span: the count bounds the window
        w.when(signal({"table": "sales"}, f"r{i}"))
    s = w.signals["table_ready"]
    assert s.count == 100 and len(s.request_ids) <= 20
    assert "r99" in s.request_ids and "r0" not in s.request_ids


def test_every_dependency_must_be_met() -> None:
    w = World()
    two = [
        {"name": "table_ready", "match": {"table": "sales"}},
        {"name": "quality_checked"},
    ]
    started(w, waiter(signal_dependencies=two))
    w.when(signal({"table": "sales"}))
    assert w.step(P, "load") is StepStatus.WAITING_FOR_SIGNALS
    assert w.instances[P].steps["load"].signals_matched == {0}
    w.when(signal({}, name="quality_checked"))
    assert w.step(P, "load") is StepStatus.STARTING


def test_bypass_starts_the_step_and_withdraws_its_wait() -> None:
    w = World()
    started(w, waiter())
    log = w.when(BypassSignals(P, "load", "loaded by hand"))
    assert log == [
        f"{P} StepSignalsBypassed",
        f"{P} StepAttemptCreated",
        "signal:table_ready SignalWaitCancelled",
    ]
    assert not w.signals["table_ready"].waits
    # A signal now wakes nobody, and a bypass of a step no longer waiting does nothing.
    assert w.when(signal({"table": "sales", "day": 20251121})) == [
        "signal:table_ready SignalReceived"
    ]
    assert w.when(BypassSignals(P, "load")) == []


def test_stopping_a_waiting_step_withdraws_its_wait() -> None:
    w = World()
    started(w, waiter())
    w.when(StopStep(P, "load", "not needed"))
    assert w.step(P, "load") is StepStatus.STOPPED
    assert w.status(P) is InstanceStatus.STOPPED
    assert not w.signals["table_ready"].waits


def test_a_paused_instance_records_the_match_and_starts_the_step_on_resume() -> None:
    from services.domain.protocol.commands import PauseInstance, ResumeInstance

    w = World()
    started(w, waiter())
    w.when(PauseInstance(P))
    w.when(signal({"table": "sales", "day": 20251121}))
    assert w.step(P, "load") is StepStatus.NOT_CREATED  # met, but paused: no attempt yet
    w.when(ResumeInstance(P))
    assert w.step(P, "load") is StepStatus.STARTING


def test_a_step_sends_its_signal_outputs_when_it_succeeds() -> None:
    w = World()
    sender = {
        "id": "sender",
        "params": {"table": "sales"},
        "steps": [
            {
                "id": "publish",
                "type": "shell",
                "command": "true",
                "signal_outputs": [
                    {
                        "name": "table_ready",
                        "params": {
                            "table": "${table}",
                            "day": {
                                "type": "long",
                                "expression": "steps.publish.outputs.day",
                            },
                        },
                        "payload": {"note": "from a step"},
                    }
                ],
            }
        ],
    }
    started(w, waiter())
    w.push(sender)
    w.start("sender", "sender~1")
    log = w.when(ReportAttemptSucceeded("sender~1", "publish", 1, '{"day":20251122}'))
    assert "signal:table_ready SignalReceived" in log
    assert f"{P} StepSignalMatched" in log
    assert w.step(P, "load") is StepStatus.STARTING
    assert w.signals["table_ready"].recent[-1].params == {"table": "sales", "day": 20251122}


def test_signal_outputs_that_cannot_be_evaluated_fail_the_attempt() -> None:
    w = World()
    bad = {
        "id": "bad",
        "steps": [
            {
                "id": "publish",
                "type": "shell",
                "command": "true",
                "retry_policy": {"user_limit": 0},
                "signal_outputs": [
                    {
                        "name": "done",
                        "params": {"n": {"type": "long", "expression": "steps.publish.outputs.n"}},
                    }
                ],
            }
        ],
    }
    w.push(bad)
    w.start("bad", "bad~1")
    w.when(ReportAttemptSucceeded("bad~1", "publish", 1, "{}"))
    assert w.step("bad~1", "publish") is StepStatus.USER_FAILED
    assert "done" not in w.signals


def test_a_duplicate_await_waits_once() -> None:
    w = World()
    c = AwaitSignal("s", P, "load", 3, 0, "[]")
    w.when(c)
    assert w.when(c) == []
    assert dict(w.signals["s"].waits) == {(P, "load", 3): ((0, ()),)}


@pytest.mark.parametrize(
    ("op", "want", "have", "ok"),
    [
        (SignalOperator.EQ, "a", "a", True),
        (SignalOperator.EQ, 1, "1", False),
        (SignalOperator.GT, 5, 6, True),
        (SignalOperator.GT, 5, 5, False),
        (SignalOperator.GE, 5, 5, True),
        (SignalOperator.LT, "b", "a", True),
        (SignalOperator.LE, 5, 6, False),
        (SignalOperator.EQ, 1, True, False),
    ],
)
def test_conditions_compare_within_one_type(
    op: SignalOperator, want: Any, have: Any, ok: bool
) -> None:
    assert satisfies((("x", op, want),), {"x": have}) is ok


def test_a_long_meets_a_string_equality_as_its_digits() -> None:
    """`baton signal quality_checked -p day=20251121` sends a long; a step waiting for
    `day: "${day}"` (a string param, as a signal trigger fills it from the same long)
    is met by it, not left waiting. Only equality: an order between a number and a text
    has no meaning."""
    assert satisfies((("day", SignalOperator.EQ, "20251121"),), {"day": 20251121})
    assert not satisfies((("day", SignalOperator.EQ, "20251121"),), {"day": 20251122})
    assert not satisfies((("day", SignalOperator.EQ, "020251121"),), {"day": 20251121})
    assert not satisfies((("day", SignalOperator.GE, "2"),), {"day": 3})
    assert not satisfies((("day", SignalOperator.EQ, "1"),), {"day": True})


def test_a_signal_with_a_param_of_another_type_is_rejected() -> None:
    w = World()
    with pytest.raises(Rejected, match="param 'rows': a signal param is a string or a long"):
        w.when(signal({"rows": 1.5}))


def test_push_rejects_signal_values_that_cannot_be_evaluated_or_typed() -> None:
    def faults(step: dict[str, Any]) -> list[tuple[str, str]]:
        with pytest.raises(DefinitionError) as err:
            parse_workflow(
                {"id": "w", "params": {"n": 1}, "steps": [{"id": "a", "type": "noop", **step}]}
            )
        return err.value.faults

    assert faults({"signal_dependencies": [{"name": "s", "match": {"t": "${nope}"}}]}) == [
        (
            "steps[0].signal_dependencies[0].match.t.value",
            "unknown name 'nope' in 'nope': no such param",
        )
    ]
    wrong = {
        "signal_outputs": [{"name": "s", "params": {"t": {"type": "long", "expression": "'x'"}}}]
    }
    [(path, message)] = faults(wrong)
    assert path == "steps[0].signal_outputs[0].params.t"
    assert "expected a long" in message
    [(path, message)] = faults({"signal_outputs": [{"name": "s", "params": {"f": 1.5}}]})
    assert path == "steps[0].signal_outputs[0].params"
    assert "a signal param is a string or a long, not a double" in message
    # Upstream outputs may be read; a step that is not upstream may not.
    [(path, message)] = faults(
        {"signal_dependencies": [{"name": "s", "match": {"t": "${steps.a.outputs.x}"}}]}
    )
    assert "is not upstream" in message
