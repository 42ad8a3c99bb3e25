"""CEL expressions and `${...}` interpolation: values, bounds, and errors that never escape."""

from __future__ import annotations

import pytest

from services.domain.kernel.errors import ExpressionError
from services.domain.language.expressions import (
    MAX_COMPREHENSIONS,
    MAX_MAPPED_ITEMS,
    MAX_NESTING,
    MAX_SOURCE_CHARS,
    compile_expression,
    interpolate,
    member_paths,
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


def test_given_a_list_too_long_for_map_then_it_is_refused_before_running() -> None:
    expr = compile_expression("params.files.map(f, f + '.gz').size()")
    short = {"params": {"files": ["a"] * MAX_MAPPED_ITEMS, "other": list(range(5000))}}
    assert expr.evaluate(short) == MAX_MAPPED_ITEMS  # only the list it names counts
    with pytest.raises(ExpressionError, match="map and filter may go over at most"):
        expr.evaluate({"params": {"files": ["a"] * (MAX_MAPPED_ITEMS + 1)}})
    # Lists joined with `+` count as many times as they may be joined.
    joined = compile_expression("(params.files + params.files).filter(f, f != '').size()")
    with pytest.raises(ExpressionError, match=r"x2 with the `\+`"):
        joined.evaluate(short)
    # exists and all are linear: no such limit.
    assert compile_expression("params.other.exists(n, n < 0)").evaluate(short) is False


def test_given_a_long_chain_of_string_concatenations_then_it_is_refused_before_running() -> None:
    source = " + ".join(["params.s"] * 40)
    with pytest.raises(ExpressionError, match="concatenations over inputs of 65536 characters"):
        compile_expression(source).evaluate({"params": {"s": "y" * 65536}})
    assert len(compile_expression(source).evaluate({"params": {"s": "y" * 100}})) == 4000


def test_nested_comprehensions_are_refused_at_compile_time() -> None:
    with pytest.raises(ExpressionError, match="may not contain another"):
        compile_expression("params.a.map(x, params.b.filter(y, y == x))")


def test_member_paths_name_the_params_and_steps_read() -> None:
    paths = member_paths("steps.a.outputs.n > params.limit && steps['b-2'].status == 'x'")
    assert (paths.params, paths.steps) == (frozenset({"limit"}), frozenset({"a", "b-2"}))
    assert not paths.params_dynamic and not paths.steps_dynamic
    assert member_paths("params[name] == 1").params_dynamic
    assert member_paths("size(steps) > 0").steps_dynamic
