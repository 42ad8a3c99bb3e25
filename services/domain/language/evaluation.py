"""Evaluating params and conditions at run time: the context an expression sees, and the
typed values that come out of it.

Pure, like the decider that calls it: the clock reaches it only as recorded times (the
instance's start), so evaluating the same state twice gives the same values. The decider
records every result in an event (`InstanceStarted.params`, `StepAttemptCreated.params`, a
`StepUnsatisfied` for a false condition), so a replay folds results and never re-evaluates.

The context, for a step's params and the conditions on its incoming edges:

    <name>            every workflow param by name (and a step's own params, for its params)
    params            the same values as a map: `params.rows`, `params["rows"]`
    steps.<id>        `{status, outputs}` of upstream steps: `steps.extract.outputs.rows`
    workflow          `{id, version, time_zone}`
    instance          `{id, run, initiator, start_time, run_start_time, run_date, run_hour}`
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from services.domain.kernel.errors import DefinitionError, ExpressionError
from services.domain.language.environment import reserved_env_fault
from services.domain.language.expressions import compile_expression, interpolate, is_template
from services.domain.language.fields import PARAM_NAME, PARAM_NAME_FAULT, Param
from services.domain.language.params import (
    ParamMode,
    check_value,
    coerce,
    describe,
    infer_type,
    normalise,
)
from services.domain.language.workflow import Workflow

# The root a loop's iterations read (`iteration.index`, `.item`, `.outputs`). Not `loop`: CEL
# reserves that word.
ITERATION = "iteration"


# What a definition's param names may not be: the context's own roots and CEL's words.
CONTEXT_ROOTS = frozenset({"params", "steps", "workflow", "instance"})


RESERVED_NAMES = CONTEXT_ROOTS | frozenset(
    {
        "loop",
        "signal",
        "signals",
        "iteration",
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)


def _instant(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def builtins(
    *,
    workflow_id: str,
    version: int,
    time_zone: str,
    instance_id: str,
    run: int,
    initiator: str,
    started_at: int,
    run_started_at: int,
) -> dict[str, Any]:
    """The built-in part of the context. `started_at` is the instance's first start,
    `run_started_at` this run's (UTC microseconds, as recorded in events)."""
    local = _instant(started_at).astimezone(ZoneInfo(time_zone))
    return {
        "workflow": {"id": workflow_id, "version": version, "time_zone": time_zone},
        "instance": {
            "id": instance_id,
            "run": run,
            "initiator": initiator,
            "start_time": _instant(started_at),
            "run_start_time": _instant(run_started_at),
            "run_date": local.strftime("%Y-%m-%d"),
            "run_hour": local.hour,
        },
    }


def context(
    values: Mapping[str, Any],
    base: Mapping[str, Any],
    steps: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    ctx: dict[str, Any] = dict(values)
    ctx["params"] = dict(values)
    ctx.update(base)
    if steps is not None:
        ctx["steps"] = steps
    return ctx


@lru_cache(maxsize=8192)
def parsed_outputs(outputs_json: str) -> Any:
    """A step's recorded outputs as a value (cached: many expressions read the same ones)."""
    return json.loads(outputs_json)


_WHOLE_TEMPLATE = re.compile(r"\$\{([^{}]*)\}")


def _fill(value: Any, ctx: Mapping[str, Any], whole_values: bool = False) -> Any:
    """`value` with its templates filled; with `whole_values`, a string that is exactly one
    `${expr}` becomes the expression's value as it is."""
    if isinstance(value, str):
        whole = _WHOLE_TEMPLATE.fullmatch(value) if whole_values else None
        if whole is not None:
            return compile_expression(whole.group(1).strip()).evaluate(ctx)
        return interpolate(value, ctx) if is_template(value) else value
    if isinstance(value, list):
        return [_fill(v, ctx, whole_values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ctx, whole_values) for k, v in value.items()}
    return value


def fill_templates(value: Any, params: Mapping[str, Any]) -> Any:
    """`value` with the `${...}` in its strings filled from `params` alone (the http and sql
    fields a worker fills from its attempt's params). A string that is exactly one `${expr}`
    takes the expression's value as it is (a number stays a number: a sql arg, a JSON body
    field); any other template is text."""
    return _fill(value, context(params, {}), whole_values=True)


def evaluate_param(name: str, param: Param, ctx: Mapping[str, Any]) -> Any:
    """The param's typed value in `ctx`; ExpressionError says which param and why."""
    if not param.dynamic:
        return param.value
    try:
        if param.expression is not None:
            raw = compile_expression(param.expression).evaluate(ctx)
        else:
            raw = _fill(param.value, ctx)
    except ExpressionError as err:
        raise ExpressionError(f"param {name}: {err}") from None
    try:
        return coerce(param.type, raw)
    except ValueError as err:
        raise ExpressionError(f"param {name}: {err} (declared {param.type.value})") from None


def evaluate_params(
    params: Mapping[str, Param],
    order: tuple[str, ...],
    values: Mapping[str, Any],
    base: Mapping[str, Any],
    steps: Mapping[str, Any] | None = None,
    keep: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`values` with each of `params` evaluated over them, in `order`; names in `keep` keep
    the value they already have in `values`."""
    out = dict(values)
    for name in order:
        if name in keep:
            continue
        out[name] = evaluate_param(name, params[name], context(out, base, steps))
    return out


def evaluate_condition(source: str, ctx: Mapping[str, Any]) -> bool:
    value = compile_expression(source).evaluate(ctx)
    if not isinstance(value, bool):
        raise ExpressionError(f"{source!r}: a condition must be a boolean, got {describe(value)}")
    return value


def check_overrides(
    wf: Workflow, overrides: Mapping[str, Any], restart: bool = False
) -> dict[str, Any]:
    """Start (or restart) overrides, typed: each checked against its declared type and mode.
    Params the definition does not declare may be given; their type is inferred. Every way
    params are given later than the push (a start, a restart, a signal trigger's start, a
    subworkflow's start) comes through here, so a name is judged here by the rules a push
    applies: a param name, and not one a step reads from its environment (environment.py)."""
    faults: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if not PARAM_NAME.match(name):
            faults.append((f"params.{name}", PARAM_NAME_FAULT))
            continue
        env_fault = reserved_env_fault(name)
        if env_fault is not None:
            faults.append((f"params.{name}", env_fault))
            continue
        declared = wf.params.get(name)
        if declared is not None:
            allowed = declared.mode.on_restart if restart else declared.mode.on_start
            if not allowed:
                when = "at restart" if restart else "at start"
                faults.append(
                    (
                        f"params.{name}",
                        f"the param is {declared.mode.value}: it cannot change {when}",
                    )
                )
                continue
        elif name in RESERVED_NAMES:
            faults.append((f"params.{name}", f"{name!r} is a reserved name"))
            continue
        ptype = declared.type if declared else infer_type(value)
        if ptype is None:
            faults.append((f"params.{name}", "cannot infer the type of this value"))
            continue
        fault = check_value(ptype, value)
        if fault:
            faults.append((f"params.{name}", f"{fault} (declared {ptype.value})"))
            continue
        out[name] = normalise(ptype, value)
    if faults:
        raise DefinitionError(faults)
    return out


def start_params(
    wf: Workflow, overrides: Mapping[str, Any], base: Mapping[str, Any]
) -> dict[str, Any]:
    """The params of a first run: overrides win; the rest are evaluated from the definition.
    Raises DefinitionError for a bad override, ExpressionError for a failed evaluation."""
    return evaluate_start_params(wf, check_overrides(wf, overrides), base)


def evaluate_start_params(
    wf: Workflow, given: Mapping[str, Any], base: Mapping[str, Any]
) -> dict[str, Any]:
    """`start_params` for overrides already checked (`check_overrides`)."""
    return evaluate_params(wf.params, wf.param_order, given, base, keep=frozenset(given))


def restart_params(
    wf: Workflow,
    previous: Mapping[str, Any],
    overrides: Mapping[str, Any],
    base: Mapping[str, Any],
) -> dict[str, Any]:
    """The params of a new run: overrides win, IMMUTABLE params are evaluated again, and
    every other param keeps the value it had in the run before."""
    given = check_overrides(wf, overrides, restart=True)
    values = {**previous, **given}
    again = frozenset(n for n, p in wf.params.items() if p.mode is ParamMode.IMMUTABLE)
    return evaluate_params(wf.params, wf.param_order, values, base, keep=frozenset(values) - again)
