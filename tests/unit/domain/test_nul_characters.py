"""A NUL character (U+0000) is text PostgreSQL cannot hold (text and jsonb refuse it), and
every string of a definition or a command reaches the read models through the log: the
projector exited on the first one. So a definition holding one is refused at push with the
path, a command from the topic holding one is Rejected (dead-lettered), and a step's report
never carries one into an event (issue 14, poison events)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.domain.decider import decide
from services.domain.kernel.documents import check_shape
from services.domain.kernel.errors import DefinitionError, Rejected
from services.domain.kernel.statuses import FailureKind
from services.domain.language.parse import parse_workflow_text
from services.domain.protocol.commands import (
    PushWorkflow,
    ReportAttemptFailed,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    SendSignal,
    StartInstance,
    StopInstance,
)
from services.domain.protocol.events import StepAttemptFailed, StepAttemptSucceeded
from services.domain.signal.decide import decide_signal
from services.domain.workflow.decide import decide_workflow
from tests.unit.domain.given import IID, History, start, workflow_json

NUL = "\x00"


def base() -> dict[str, Any]:
    return {
        "id": "wf",
        "description": "d",
        "tags": ["t"],
        "params": {"p": {"type": "string", "value": "v"}},
        "steps": [{"id": "a", "type": "shell", "command": "true"}],
    }


def with_nul(doc: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = f"a{NUL}b"
    return doc


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (("description",), "description"),
        (("tags", 0), "tags[0]"),
        (("params", "p", "value"), "params.p.value"),
        (("steps", 0, "command"), "steps[0].command"),
    ],
)
def test_a_definition_holding_a_nul_is_refused_at_its_path(
    path: tuple[str | int, ...], shown: str
) -> None:
    text = json.dumps(with_nul(base(), path))  # the JSON escape \u0000
    assert "\\u0000" in text
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    assert err.value.faults == [(shown, "a string may not hold a NUL character")]


def test_a_yaml_definition_holding_a_nul_is_refused() -> None:
    text = 'id: wf\ndescription: "a\\0b"\nsteps: [{id: a, type: noop}]\n'
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    assert err.value.faults == [("description", "a string may not hold a NUL character")]


def test_a_key_holding_a_nul_is_refused_at_its_path() -> None:
    with pytest.raises(DefinitionError) as err:
        check_shape({"params": {"m": {"value": {f"k{NUL}": 1}}}})
    # As the API's body checks name it; the response's JSON escapes the NUL.
    assert err.value.faults == [(f"params.m.value.k{NUL}", "a string may not hold a NUL character")]


def test_a_key_holding_a_lone_surrogate_is_named_by_its_escape() -> None:
    with pytest.raises(DefinitionError) as err:
        check_shape({"payload": {"k\ud800": 1}})
    assert err.value.faults == [("payload.k\\ud800", "a string may not hold a lone surrogate")]


def test_a_backslash_u0000_that_is_text_is_no_nul() -> None:
    doc = base()
    doc["description"] = "\\u0000"  # six characters, written in JSON as "\\u0000"
    assert parse_workflow_text(json.dumps(doc)).description == "\\u0000"


def test_a_pushed_definition_holding_a_nul_is_rejected() -> None:
    command = PushWorkflow("wf", json.dumps(with_nul(base(), ("description",))))
    with pytest.raises(Rejected, match="description: a string may not hold a NUL"):
        decide_workflow(None, command, 0)


def test_a_start_whose_definition_holds_a_nul_is_rejected() -> None:
    definition = workflow_json([{"id": "a", "type": "noop"}], description="DESC")
    definition = definition.replace("DESC", "a\\u0000b")
    with pytest.raises(Rejected, match="NUL"):
        decide(None, start(definition), 0)


@pytest.mark.parametrize(
    "command",
    [
        StartInstance(IID, "wf", 1, workflow_json([{"id": "a", "type": "noop"}]), "{}", f"a{NUL}"),
        start(workflow_json([{"id": "a", "type": "noop"}]), '{"p": "a\\u0000b"}'),
    ],
)
def test_a_start_holding_a_nul_is_rejected(command: StartInstance) -> None:
    with pytest.raises(Rejected, match="NUL"):
        decide(None, command, 0)


@pytest.mark.parametrize(
    "command",
    [
        SendSignal("s", "r1", "{}", "{}", f"api:{NUL}"),
        SendSignal(f"s{NUL}", "r1", "{}", "{}", "api"),
        SendSignal("s", "r1", '{"a": "\\u0000"}', "{}", "api"),
        SendSignal("s", "r1", "{}", '{"a": ["\\u0000"]}', "api"),
    ],
)
def test_a_signal_holding_a_nul_is_rejected(command: SendSignal) -> None:
    with pytest.raises(Rejected, match="NUL"):
        decide_signal(None, command, 0)


def started() -> History:
    h = History()
    h.when(start(workflow_json([{"id": "a", "type": "shell", "command": "true"}])))
    h.when(ReportAttemptStarted(IID, "a", 1, "w1"))
    return h


@pytest.mark.parametrize(
    "command",
    [
        StopInstance(IID, f"why{NUL}"),
        ReportAttemptStarted(IID, "a", 1, f"w{NUL}"),
    ],
)
def test_an_instance_command_holding_a_nul_is_rejected(command: Any) -> None:
    h = started()
    with pytest.raises(Rejected, match="NUL"):
        h.when(command)


@pytest.mark.parametrize("outputs", ['{"x": "a\\u0000b"}', '{"a\\u0000": 1}', f'{{"x": "{NUL}"}}'])
def test_a_success_whose_outputs_hold_a_nul_is_a_user_failure(outputs: str) -> None:
    h = started()
    payloads = h.when(ReportAttemptSucceeded(IID, "a", 1, outputs))
    assert not [p for p in payloads if isinstance(p, StepAttemptSucceeded)]
    [failed] = [p for p in payloads if isinstance(p, StepAttemptFailed)]
    assert failed.kind is FailureKind.USER
    assert failed.message.startswith("outputs")
    assert NUL not in failed.message


def test_a_failure_report_holding_a_nul_is_recorded_with_a_replacement_character() -> None:
    h = started()
    report = ReportAttemptFailed(IID, "a", 1, FailureKind.USER, f"exit 1{NUL}", f"tail{NUL}x")
    [failed] = [p for p in h.when(report) if isinstance(p, StepAttemptFailed)]
    assert (failed.message, failed.output_tail) == ("exit 1\ufffd", "tail\ufffdx")


# A lone surrogate (U+D800 to U+DFFF on its own) is no Unicode text either: PostgreSQL's jsonb
# refuses its escape ("Unicode low surrogate must follow a high surrogate"). Pydantic refuses
# one in a string field; a map param's value or a payload took it.
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff"])
def test_a_lone_surrogate_in_a_definition_is_refused_at_its_path(escape: str) -> None:
    text = (
        '{"id": "wf", "params": {"m": {"type": "map", "value": {"k": "a' + escape + 'b"}}},'
        ' "steps": [{"id": "a", "type": "noop"}]}'
    )
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    assert err.value.faults == [("params.m.value.k", "a string may not hold a lone surrogate")]


def test_a_surrogate_pair_is_a_character_like_any_other() -> None:
    text = '{"id": "wf", "description": "\\ud83d\\ude00", "steps": [{"id": "a", "type": "noop"}]}'
    assert parse_workflow_text(text).description == "\U0001f600"


def test_a_signal_payload_holding_a_lone_surrogate_is_rejected() -> None:
    with pytest.raises(Rejected, match="lone surrogate"):
        decide_signal(None, SendSignal("s", "r1", "{}", '{"a": "\\ud800"}', "api"), 0)
