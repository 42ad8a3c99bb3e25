"""The workflow language: what parses, and the exact path of every fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.domain.kernel.errors import DefinitionError
from services.domain.language.evaluation import check_overrides, start_params
from services.domain.language.fields import MAX_STEPS, parse_duration
from services.domain.language.params import ParamType
from services.domain.language.parse import parse_workflow, parse_workflow_text
from services.domain.language.workflow import load_workflow


def faults(data: Any) -> dict[str, str]:
    with pytest.raises(DefinitionError) as err:
        parse_workflow(data)
    return dict(err.value.faults)


def wf(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "w", "steps": list(steps), **fields}


def test_yaml_and_json_parse_to_the_same_canonical_definition() -> None:
    yaml_text = """
id: w
params:
  rows: 3
  when: {type: string, value: "2024-01-01"}
steps:
  - id: a
    type: shell
    command: echo $rows
    timeout: 1m30s
    retry_policy: {user_limit: 3, backoff: {type: fixed, user_seconds: 5}}
"""
    json_text = (
        '{"id":"w","params":{"rows":3,"when":{"type":"string","value":"2024-01-01"}},'
        '"steps":[{"id":"a","type":"shell","command":"echo $rows","timeout":90,'
        '"retry_policy":{"user_limit":3,"backoff":{"type":"fixed","user_seconds":5}}}]}'
    )
    a, b = parse_workflow_text(yaml_text), parse_workflow_text(json_text)
    assert a.to_json() == b.to_json()
    assert a.params["rows"].type is ParamType.LONG
    assert a.steps[0].timeout == 90.0


@pytest.mark.parametrize(
    ("data", "path", "needle"),
    [
        (
            wf(
                {"id": "a", "type": "noop", "next": ["b"]},
                {"id": "b", "type": "noop", "next": ["a"]},
            ),
            "steps[0].next[0]",
            "cycle: a -> b -> a",
        ),
        (wf({"id": "a", "type": "noop", "next": ["ghost"]}), "steps[0].next[0]", "unknown step"),
        (wf({"id": "a", "type": "noop"}, {"id": "a", "type": "noop"}), "steps[1].id", "duplicate"),
        (wf({"id": "a", "type": "teleport"}), "steps[0].type", "unknown type 'teleport'; expected"),
        (wf({"id": "a"}), "steps[0].type", "missing type"),
        (
            wf(
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "noop"},
                {"id": "c", "type": "noop"},
                {"id": "d", "type": "shell", "command": "x", "retry_policy": {"user_limit": 100}},
            ),
            "steps[3].retry_policy.user_limit",
            "less than or equal to 99",
        ),
        (wf({"id": "a", "type": "shell"}), "steps[0].command", "Field required"),
        (wf({"id": "a", "type": "noop", "colour": "red"}), "steps[0].colour", "Extra inputs"),
        (
            wf({"id": "a", "type": "sleep", "duration": "soon"}),
            "steps[0].duration",
            "invalid duration",
        ),
        (wf({"id": "a", "type": "python", "function": "nocolon"}), "steps[0].function", "pattern"),
        (
            wf({"id": "a", "type": "noop"}, params={"n": {"type": "long", "value": "x"}}),
            "params.n.value",
            "expected a long",
        ),
        (wf({"id": "a", "type": "noop"}, timeout="200d"), "timeout", "at most 120 days"),
        (
            wf({"id": "a", "type": "noop", "retry_policy": {"backoff": {"type": "linear"}}}),
            "steps[0].retry_policy.backoff.type",
            "expected one of fixed, exponential",
        ),
        (
            wf({"id": "a", "type": "noop", "failure_mode": "SHRUG"}),
            "steps[0].failure_mode",
            "FAIL_",
        ),
        ({"id": "w", "steps": []}, "steps", "at least 1"),
        ({"id": "bad id!", "steps": [{"id": "a", "type": "noop"}]}, "id", "pattern"),
    ],
)
def test_faults_name_the_exact_path(data: Any, path: str, needle: str) -> None:
    found = faults(data)
    assert path in found, found
    assert needle in found[path]


def test_oversize_definitions_are_rejected() -> None:
    steps = [{"id": f"s{i}", "type": "noop"} for i in range(MAX_STEPS + 1)]
    assert "steps" in faults(wf(*steps))
    with pytest.raises(DefinitionError, match="at most"):
        parse_workflow_text("x" * 1_000_001)


def test_all_faults_are_reported_at_once() -> None:
    found = faults(wf({"id": "a", "type": "shell"}, {"id": "b", "type": "bogus"}))
    assert set(found) == {"steps[0].command", "steps[1].type"}


def test_not_yaml_and_not_an_object() -> None:
    with pytest.raises(DefinitionError, match="not valid JSON or YAML"):
        parse_workflow_text("id: [unclosed")
    with pytest.raises(DefinitionError, match="must be an object"):
        parse_workflow_text("- a\n- b\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("30s", 30.0), ("1h30m", 5400.0), ("250ms", 0.25), ("2d", 172800.0)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_start_params_are_checked_against_declared_types() -> None:
    w = parse_workflow(wf({"id": "a", "type": "noop"}, params={"n": 1, "xs": [1.5, 2]}))
    assert start_params(w, {"n": 5, "extra": "s"}, {}) == {"n": 5, "xs": [1.5, 2.0], "extra": "s"}
    with pytest.raises(DefinitionError) as err:
        check_overrides(w, {"n": "five", "xs": ["a"]})
    assert dict(err.value.faults).keys() == {"params.n", "params.xs"}


@pytest.mark.parametrize("value", [".inf", ".nan", "1e13", "-5", 10_000_000_000_000.0])
def test_durations_are_finite_and_bounded_everywhere(value: Any) -> None:
    text = f"id: w\nsteps:\n  - id: a\n    type: sleep\n    duration: {value}\n"
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    assert "steps[0].duration" in dict(err.value.faults)
    policy = {"backoff": {"type": "fixed", "user_seconds": float("inf")}}
    found = faults(wf({"id": "a", "type": "noop", "retry_policy": policy}))
    assert "steps[0].retry_policy.backoff.user_seconds" in found


def test_json_bodies_are_read_as_json() -> None:
    w = parse_workflow_text('{"id": "w", "steps": [{"id": "a", "type": "sleep", "duration": 1e2}]}')
    assert w.steps[0].duration == 100.0  # type: ignore[union-attr]


def test_the_canonical_form_is_bounded() -> None:
    steps = [
        {"id": f"s{i}", "type": "shell", "command": "x" * 2000, "description": "d" * 2000}
        for i in range(200)
    ]
    with pytest.raises(DefinitionError, match="canonical form"):
        parse_workflow(wf(*steps))


def test_definitions_stored_by_the_first_dsl_still_load() -> None:
    """InstanceStarted events carry the canonical definition and evolve loads it on replay:
    a DSL change that cannot load this file would make old instances unreplayable."""
    stored = (
        Path(__file__).parents[4] / "tests" / "golden" / "definitions" / "v1.json"
    ).read_text()
    wf = load_workflow(stored.strip())
    assert wf.dag.roots == ("root",)
    assert wf.dag.predecessors["join"] == ("shell", "nap", "py")
    assert wf.params["rows"].value == 100
