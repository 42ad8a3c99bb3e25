"""Params, expressions and conditions in definitions: what parses, and every fault found at
push time with its exact path."""

from __future__ import annotations

from typing import Any

import pytest

from services.domain.kernel.errors import DefinitionError
from services.domain.language.evaluation import (
    builtins,
    check_overrides,
    restart_params,
    start_params,
)
from services.domain.language.params import ParamMode
from services.domain.language.parse import parse_workflow


def wf(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "w", "steps": list(steps) or [{"id": "a", "type": "noop"}], **fields}


def faults(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(DefinitionError) as err:
        parse_workflow(data)
    return dict(err.value.faults)


BASE = builtins(
    workflow_id="w",
    version=1,
    time_zone="Europe/Amsterdam",
    instance_id="i-1",
    run=1,
    initiator="test",
    started_at=1_704_063_600_000_000,  # 2023-12-31T23:00:00Z: 2024-01-01 00:00 in Amsterdam
    run_started_at=1_704_063_600_000_000,
)


def test_given_literal_template_and_expression_params_when_started_then_evaluated_in_order() -> (
    None
):
    w = parse_workflow(
        wf(
            params={
                "rows": 10,
                "limit": {"type": "long", "expression": "rows * 2"},
                "path": "s3://bucket/${instance.run_date}/${limit}",
                "regions": {"type": "string_array", "value": ["eu", "${params.path}"]},
                "ratio": {"type": "double", "expression": "limit"},
            },
            time_zone="Europe/Amsterdam",
        )
    )
    values = start_params(w, {}, BASE)
    assert values == {
        "rows": 10,
        "limit": 20,
        "path": "s3://bucket/2024-01-01/20",
        "regions": ["eu", "s3://bucket/2024-01-01/20"],
        "ratio": 20.0,  # a long result for a double param becomes a double
    }
    # An override wins, and what depends on it follows.
    assert start_params(w, {"rows": 1}, BASE)["limit"] == 2


def test_given_a_timestamp_expression_for_a_string_param_then_it_is_iso_8601() -> None:
    w = parse_workflow(
        wf(params={"t": {"type": "string", "expression": "instance.start_time + duration('1h')"}})
    )
    assert start_params(w, {}, BASE)["t"] == "2024-01-01T00:00:00Z"


def test_given_modes_when_overridden_at_start_and_restart_then_enforced() -> None:
    w = parse_workflow(
        wf(
            params={
                "c": {"type": "string", "value": "x", "mode": "constant"},
                "i": {
                    "type": "string",
                    "expression": "'run ' + string(instance.run)",
                    "mode": "IMMUTABLE",
                },
                "m": 1,
                "s": {"type": "long", "value": 1, "mode": "MUTABLE_ON_START"},
                "r": {"type": "long", "value": 1, "mode": "MUTABLE_ON_START_RESTART"},
            }
        )
    )
    assert w.params["c"].mode is ParamMode.CONSTANT
    with pytest.raises(DefinitionError) as err:
        check_overrides(w, {"c": "y", "i": "z"})
    assert dict(err.value.faults) == {
        "params.c": "the param is CONSTANT: it cannot change at start",
        "params.i": "the param is IMMUTABLE: it cannot change at start",
    }
    first = start_params(w, {"s": 5, "r": 6, "m": 7}, BASE)
    assert first == {"c": "x", "i": "run 1", "m": 7, "s": 5, "r": 6}
    with pytest.raises(DefinitionError) as err:
        check_overrides(w, {"s": 9}, restart=True)
    assert dict(err.value.faults) == {
        "params.s": "the param is MUTABLE_ON_START: it cannot change at restart"
    }
    second_base = {**BASE, "instance": {**BASE["instance"], "run": 2}}
    second = restart_params(w, first, {"r": 60}, second_base)
    # IMMUTABLE is evaluated again; the others keep the run before's values unless overridden.
    assert second == {"c": "x", "i": "run 2", "m": 7, "s": 5, "r": 60}


def test_given_conditional_edges_then_the_dag_records_each_condition() -> None:
    w = parse_workflow(
        wf(
            {
                "id": "a",
                "type": "noop",
                "next": [{"step": "b", "if": "params.go"}, "c", {"step": "d", "if": "true"}],
            },
            {"id": "b", "type": "noop"},
            {"id": "c", "type": "noop"},
            {"id": "d", "type": "noop"},
            params={"go": True},
        )
    )
    assert w.dag.conditions == {("a", "b"): "params.go"}  # `true` is unconditional
    assert '"if":"params.go"' in w.to_json()


@pytest.mark.parametrize(
    ("data", "path", "needle"),
    [
        (
            wf(params={"x": {"type": "long", "expression": "nope + 1"}}),
            "params.x.expression",
            "unknown name 'nope'",
        ),
        (
            wf(params={"x": {"type": "long", "expression": "params.nope"}}),
            "params.x.expression",
            "unknown param 'nope'",
        ),
        (wf(params={"x": "${ghost}"}), "params.x.value", "unknown name 'ghost'"),
        (
            wf(params={"x": {"type": "long", "expression": "steps.a.outputs.n"}}),
            "params.x.expression",
            "workflow params are evaluated at start",
        ),
        (
            wf(params={"x": {"type": "long", "expression": "'text'"}}),
            "params.x",
            "expected a long, got a string",
        ),
        (
            wf(
                params={
                    "x": {"type": "long", "expression": "y"},
                    "y": {"type": "long", "expression": "x"},
                }
            ),
            "params.x",
            "cycle: x -> y -> x",
        ),
        (wf(params={"steps": 1}), "params.steps", "reserved name"),
        (wf(params={"my-param": 1}), "params.my-param", "letters, digits and _"),
        (
            wf(params={"c": {"type": "string", "value": "${x}", "mode": "CONSTANT"}}),
            "params.c",
            "CONSTANT param must be a plain literal",
        ),
        (wf(params={"x": {"type": "long"}}), "params.x", "give a value or an expression"),
        (
            wf(params={"x": {"type": "long", "expression": "a.map(i, b.map(j, j))"}}),
            "params.x.expression",
            "may not contain another",
        ),
        (wf(time_zone="Mars/Olympus"), "time_zone", "unknown time zone"),
        (
            wf(
                {"id": "a", "type": "noop", "next": [{"step": "b", "if": "params.n + 1"}]},
                {"id": "b", "type": "noop"},
                params={"n": 1},
            ),
            "steps[0].next[0].if",
            "a condition must be a boolean, got a long",
        ),
        (
            wf(
                {"id": "a", "type": "noop", "next": [{"step": "b", "if": "steps.a.outputs.n * 2"}]},
                {"id": "b", "type": "noop"},
            ),
            "steps[0].next[0].if",
            "is not a boolean expression",
        ),
        (
            wf(
                {"id": "a", "type": "noop", "next": ["b"]},
                {"id": "b", "type": "noop"},
                {
                    "id": "c",
                    "type": "noop",
                    "params": {"n": {"type": "long", "expression": "steps.b.outputs.n"}},
                },
            ),
            "steps[2].params.n.expression",
            "step 'b' is not upstream of step 'c'",
        ),
        (
            wf(
                {
                    "id": "a",
                    "type": "noop",
                    "params": {"n": {"type": "long", "expression": "steps.zz.outputs.n"}},
                },
            ),
            "steps[0].params.n.expression",
            "unknown step 'zz'",
        ),
        (
            wf(
                {"id": "a", "type": "noop", "next": [{"step": "b", "if": "params.x >"}]},
                {"id": "b", "type": "noop"},
            ),
            "steps[0].next[0].if",
            "is not a valid expression",
        ),
    ],
)
def test_bad_expressions_are_rejected_at_push_time_with_path_and_message(
    data: dict[str, Any], path: str, needle: str
) -> None:
    found = faults(data)
    assert path in found, found
    assert needle in found[path], found[path]


def test_a_step_param_may_refine_the_workflow_param_of_the_same_name() -> None:
    w = parse_workflow(
        wf(
            {"id": "a", "type": "noop", "params": {"path": "${path}/part"}},
            params={"path": "/data"},
        )
    )
    assert w.dag.dynamic_params["a"] is True
    assert w.dag.param_order["a"] == ("path",)


def test_step_outputs_upstream_are_readable_and_unknown_at_push_time() -> None:
    w = parse_workflow(
        wf(
            {
                "id": "extract",
                "type": "noop",
                "next": [{"step": "load", "if": "steps.extract.outputs.rows > 0"}],
            },
            {
                "id": "load",
                "type": "noop",
                "params": {"rows": {"type": "long", "expression": "steps['extract'].outputs.rows"}},
            },
        )
    )
    assert w.dag.ancestors["load"] == frozenset({"extract"})


def test_http_and_sql_fields_may_template_params_only() -> None:
    data = wf(
        {"id": "a", "type": "noop", "next": ["b"]},
        {
            "id": "b",
            "type": "http",
            "url": "https://x/${steps.a.outputs.id}/${nope}",
            "headers": {"x-day": "${instance.run_date}"},
        },
        {
            "id": "c",
            "type": "sql",
            "connection": "db",
            "statement": "select $1",
            "args": ["${ghost}"],
        },
    )
    with pytest.raises(DefinitionError) as err:
        parse_workflow(data)
    found = [f"{path}: {msg}" for path, msg in err.value.faults]
    assert any(f.startswith("steps[1].url: ") and "'steps', which" in f for f in found), found
    assert any(f.startswith("steps[1].url: ") and "unknown name 'nope'" in f for f in found)
    assert any(f.startswith("steps[1].headers.x-day: ") and "cannot see" in f for f in found)
    assert any(f.startswith("steps[2].args[0]: ") and "unknown name 'ghost'" in f for f in found)


def test_a_worker_fills_whole_templates_with_values_and_others_with_text() -> None:
    from services.domain.language.evaluation import fill_templates

    params = {"n": 2, "day": "2024-01-01", "m": {"k": [1]}}
    assert fill_templates(["${n}", "x${n}", "${m}", "$${n}", {"d": "${day}"}], params) == [
        2,
        "x2",
        {"k": [1]},
        "${n}",
        {"d": "2024-01-01"},
    ]
