"""CEL expressions and `${...}` interpolation: values, bounds, and errors that never escape."""

from __future__ import annotations

import pytest

from services.domain.expressions import (
    MAX_COMPREHENSIONS,
    MAX_NESTING,
    MAX_SOURCE_CHARS,
    ExpressionError,
    compile_expression,
    interpolate,
    template_references,
)

CONTEXT = {
    "params": {"date": "2024-01-01", "limit": 10, "regions": ["eu", "us"]},
    "steps": {"extract": {"outputs": {"rows": 42}}},
}


def test_given_params_and_step_outputs_when_evaluated_then_cel_semantics_apply() -> None:
    expr = compile_expression(
        "steps.extract.outputs.rows > params.limit && size(params.regions) == 2"
    )
    assert expr.evaluate(CONTEXT) is True
    assert compile_expression("params.regions.map(r, r + '-1')").evaluate(CONTEXT) == [
        "eu-1",
        "us-1",
    ]


def test_references_are_the_names_read_without_comprehension_variables() -> None:
    expr = compile_expression("params.regions.exists(r, r == 'eu') && steps.a.outputs.ok")
    assert expr.references == frozenset({"params", "steps"})


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("", "may not be empty"),
        ("params.limit >", "is not a valid expression"),
        ("x" * (MAX_SOURCE_CHARS + 1), f"at most {MAX_SOURCE_CHARS} characters"),
        ("(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1), "nested deeper"),
        (
            " && ".join(
                f"params.regions.all(r{i}, r{i} != '')" for i in range(MAX_COMPREHENSIONS + 1)
            ),
            f"at most {MAX_COMPREHENSIONS} comprehensions",
        ),
    ],
)
def test_a_bad_source_is_refused_at_compile_time_with_the_reason(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("nope + 1", "unknown name nope"),
        ("params.limit / 0", "division by zero"),
        ("9223372036854775807 + params.limit", "overflow"),
        ("params.date + 1", r"^'params.date \+ 1': "),  # a type error: no string + int
    ],
)
def test_a_failing_evaluation_is_an_expression_error_never_a_crash(
    source: str, reason: str
) -> None:
    with pytest.raises(ExpressionError, match=reason):
        compile_expression(source).evaluate(CONTEXT)


def test_an_oversized_result_is_refused() -> None:
    big = {"params": {"blob": "x" * 70_000}}
    with pytest.raises(ExpressionError, match="bytes as JSON"):
        compile_expression("params.blob").evaluate(big)


def test_interpolation_substitutes_values_and_keeps_escapes() -> None:
    text = "run ${params.date} for ${params.regions} rows=${steps.extract.outputs.rows} $${not}"
    assert interpolate(text, CONTEXT) == 'run 2024-01-01 for ["eu","us"] rows=42 ${not}'
    assert template_references(text) == frozenset({"params", "steps"})
    with pytest.raises(ExpressionError, match="unknown name missing"):
        interpolate("${missing}", CONTEXT)
