"""Checks of a definition's expressions at push time, each fault with its exact path.

- Every expression compiles within the bounds (services.domain.language.expressions).
- Every name it reads exists: a param of its scope, or a context root; `params.x` names a
  param of its scope; `steps.x` names a step upstream of where it is evaluated (its outputs
  exist by then). Workflow params are evaluated at start, before any step: no `steps` there.
- Params do not depend on each other in a cycle.
- What can be evaluated without a run is evaluated, with the default values and sample
  built-ins: a param's value must have its declared type, and a condition must be a boolean.
  A condition that reads step outputs is judged by its outermost operator (`a + 1` can never
  be a boolean); the rest is checked when it runs, and a failure there fails the step.
- A signal trigger's match values fit the declared params they would start (triggers.py).
- An http step's url and headers are plain http to a host (http_urls.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.domain.kernel.errors import ExpressionError
from services.domain.language.dag import (
    order_params,
    param_dependencies,
    param_reads,
    param_sources,
)
from services.domain.language.environment import reserved_env_fault
from services.domain.language.evaluation import (
    CONTEXT_ROOTS,
    ITERATION,
    RESERVED_NAMES,
    builtins,
    context,
    evaluate_condition,
    evaluate_param,
)
from services.domain.language.expressions import (
    boolean_shape,
    compile_expression,
    member_paths,
    value_templates,
)
from services.domain.language.fields import PARAM_NAME, PARAM_NAME_FAULT, Param
from services.domain.language.http_urls import http_step_faults
from services.domain.language.params import describe
from services.domain.language.steps import ForeachStep, HttpStep, WhileStep
from services.domain.language.triggers import signal_trigger_faults
from services.domain.language.workflow import Workflow, load_workflow

# What an expression may read only in a run: step outputs, and a loop's iteration.
RUN_ROOTS = frozenset({"steps", ITERATION})


# 2024-01-01T00:00:00Z: the built-ins a push-time evaluation sees.
_SAMPLE_START = 1_704_067_200_000_000


Faults = list[tuple[str, str]]


class _Scope:
    """What an expression evaluated at one place may read."""

    def __init__(
        self,
        names: frozenset[str],
        steps: frozenset[str] | None,
        where: str,
        wf: Workflow,
        roots: frozenset[str] = CONTEXT_ROOTS,
    ) -> None:
        self.names = names  # params, by name or as params.<name>
        self.steps = steps  # upstream steps; None: no steps at all (workflow params)
        self.where = where  # for messages: "step 'load'"
        self.wf = wf
        self.roots = roots  # the context's other names it may read


def _sample_base(wf: Workflow) -> dict[str, Any]:
    return builtins(
        workflow_id=wf.id,
        version=1,
        time_zone=wf.time_zone,
        instance_id="push-check",
        run=1,
        initiator="push-check",
        started_at=_SAMPLE_START,
        run_started_at=_SAMPLE_START,
    )


def _source_faults(src: str, path: str, scope: _Scope) -> tuple[Faults, bool]:
    """Faults of one expression, and whether it can only be judged in a run (it reads step
    outputs or the iteration)."""
    try:
        expr = compile_expression(src)
    except ExpressionError as err:
        return [(path, str(err))], False
    faults: Faults = []
    for name in sorted(expr.references - scope.names - scope.roots):
        if name in CONTEXT_ROOTS:
            faults.append((path, f"{src!r} reads {name!r}, which {scope.where} cannot see"))
        elif name == ITERATION:
            faults.append(
                (
                    path,
                    f"{src!r} reads {name!r}, which {scope.where} cannot see (only a loop's"
                    " params, condition and steps run in an iteration)",
                )
            )
        else:
            faults.append((path, f"unknown name {name!r} in {src!r}: no such param"))
    paths = member_paths(src)
    for name in sorted(paths.params - scope.names):
        faults.append((path, f"unknown param {name!r} in {src!r}"))
    # Step outputs and the iteration exist only in a run: such an expression is judged then.
    run_time = bool(expr.references & RUN_ROOTS)
    if "steps" not in scope.roots:
        return faults, run_time  # reading steps at all is reported above
    if "steps" in expr.references and scope.steps is None:
        faults.append(
            (
                path,
                f"{src!r} reads steps, but workflow params are evaluated at start, before any step runs",
            )
        )
    if scope.steps is not None:
        known = scope.wf.dag.steps
        for sid in sorted(paths.steps - scope.steps):
            if sid not in known:
                faults.append((path, f"unknown step {sid!r} in {src!r}"))
            else:
                faults.append(
                    (
                        path,
                        f"step {sid!r} is not upstream of {scope.where}: its outputs may not"
                        " exist when this is evaluated",
                    )
                )
    return faults, run_time


def _params_faults(
    params: Mapping[str, Param],
    prefix: str,
    scope: _Scope,
    outer: frozenset[str],
    sample: dict[str, Any],
    base: Mapping[str, Any],
) -> Faults:
    """Faults of one map of params; evaluates what it can into `sample`."""
    faults: Faults = []
    run_time: set[str] = set()
    for name, p in params.items():
        if not PARAM_NAME.match(name):
            faults.append((f"{prefix}.{name}", PARAM_NAME_FAULT))
        elif name in RESERVED_NAMES:
            faults.append((f"{prefix}.{name}", f"{name!r} is a reserved name"))
        elif env_fault := reserved_env_fault(name):
            faults.append((f"{prefix}.{name}", env_fault))
        for src, where in param_sources(p):
            found, later = _source_faults(src, f"{prefix}.{name}.{where}", scope)
            faults.extend(found)
            if later:
                run_time.add(name)
    if faults:
        return faults
    deps = param_dependencies(params, outer)
    order, cycle = order_params(deps)
    if cycle:
        return [
            (
                f"{prefix}.{cycle[0]}",
                "params depend on each other in a cycle: " + " -> ".join(cycle),
            )
        ]
    # Evaluate what needs no run: in order, skipping whatever reads steps or the iteration
    # (or depends on it), and whatever reads an outer param that could not be evaluated
    # (already reported).
    blocked = set(run_time)
    unknown = outer - sample.keys()
    for name in order:
        if deps[name] & blocked or param_reads(params[name]) & unknown:
            blocked.add(name)
        if name in blocked:
            continue
        try:
            sample[name] = evaluate_param(name, params[name], context(sample, base))
        except ExpressionError as err:
            faults.append(
                (f"{prefix}.{name}", f"{err} (evaluated at push time with the default values)")
            )
            blocked.add(name)
    return faults


def _condition_faults(
    src: str, path: str, scope: _Scope, sample: Mapping[str, Any], base: Mapping[str, Any]
) -> Faults:
    found, run_time = _source_faults(src, path, scope)
    if found:
        return found
    if not run_time:
        expr = compile_expression(src)
        if (expr.references | member_paths(src).params) & (scope.names - sample.keys()):
            return []  # reads a param that could not be evaluated (already reported)
        try:
            evaluate_condition(src, context(sample, base))
        except ExpressionError as err:
            return [(path, f"{err} (evaluated at push time with the default values)")]
        return []
    if boolean_shape(src) is False:
        return [(path, f"{src!r} is not a boolean expression; a condition must be one")]
    return []


def _runtime_field_faults(step: Any, at: str, names: frozenset[str], wf: Workflow) -> Faults:
    """`${...}` in http and sql fields: a worker fills them from the attempt's params alone."""
    fields = {"http": ("url", "headers", "body"), "sql": ("args",)}.get(step.type, ())
    scope = _Scope(
        names,
        frozenset(),
        f"the {step.type} fields of a step (map it to a step param)",
        wf,
        roots=frozenset({"params"}),
    )
    faults: Faults = []
    for field in fields:
        for src, path in value_templates(getattr(step, field), f"{at}.{field}"):
            faults += _source_faults(src, path, scope)[0]
    return faults


def _value_faults(
    values: Mapping[str, Param],
    prefix: str,
    scope: _Scope,
    sample: Mapping[str, Any],
    base: Mapping[str, Any],
) -> Faults:
    """Faults of values evaluated each on its own (no value reads another): what they read,
    and, when no run is needed, their type with the default values."""
    faults: Faults = []
    for name, p in values.items():
        found: Faults = []
        run_time = False
        for src, where in param_sources(p):
            more, later = _source_faults(src, f"{prefix}.{name}.{where}", scope)
            found += more
            run_time = run_time or later
        faults += found
        if found or run_time or param_reads(p) & (scope.names - sample.keys()):
            continue
        try:
            evaluate_param(name, p, context(dict(sample), base))
        except ExpressionError as err:
            faults.append(
                (f"{prefix}.{name}", f"{err} (evaluated at push time with the default values)")
            )
    return faults


def _signal_faults(
    wf: Workflow,
    step: Any,
    at: str,
    names: frozenset[str],
    sample: Mapping[str, Any],
    base: Mapping[str, Any],
    roots: frozenset[str],
) -> Faults:
    """Signal dependencies' match values (evaluated before the step starts) and signal
    outputs' params (as it succeeds: its own outputs are visible)."""
    upstream = wf.dag.ancestors[step.id]
    faults: Faults = []
    for i, dep in enumerate(step.signal_dependencies):
        scope = _Scope(names, upstream, f"the signal dependencies of step {step.id!r}", wf, roots)
        values = {name: cond.value for name, cond in dep.match.items()}
        faults += _value_faults(values, f"{at}.signal_dependencies[{i}].match", scope, sample, base)
    for i, out in enumerate(step.signal_outputs):
        scope = _Scope(
            names, upstream | {step.id}, f"the signal outputs of step {step.id!r}", wf, roots
        )
        faults += _value_faults(out.params, f"{at}.signal_outputs[{i}].params", scope, sample, base)
    return faults


def expression_faults(wf: Workflow) -> Faults:
    """Every fault of the definition's params and conditions (see the module's doc)."""
    base = _sample_base(wf)
    names = frozenset(wf.params)
    sample: dict[str, Any] = {}
    faults = _params_faults(
        wf.params, "params", _Scope(names, None, "the workflow", wf), frozenset(), sample, base
    )
    faults += signal_trigger_faults(wf.params, wf.signal_triggers)
    return faults + _steps_faults(wf, names, sample, base, "", CONTEXT_ROOTS)


def _steps_faults(
    wf: Workflow,
    names: frozenset[str],
    sample: dict[str, Any],
    base: Mapping[str, Any],
    prefix: str,
    roots: frozenset[str],
) -> Faults:
    """The faults of a graph's steps: those of `wf`, or of a loop's body (`prefix` then
    locates it, `names` are the params it sees, and `roots` include `iteration`)."""
    faults: Faults = []
    dag = wf.dag
    for i, step in enumerate(wf.steps):
        at = f"{prefix}steps[{i}]"
        is_loop = isinstance(step, ForeachStep | WhileStep)
        # A loop's params are evaluated per iteration: they read `iteration`.
        step_roots = roots | {ITERATION} if is_loop else roots
        scope = _Scope(
            names | frozenset(step.params),
            dag.ancestors[step.id],
            f"step {step.id!r}",
            wf,
            step_roots,
        )
        step_sample = dict(sample)
        faults += _params_faults(step.params, f"{at}.params", scope, names, step_sample, base)
        faults += _runtime_field_faults(step, at, names | frozenset(step.params), wf)
        if isinstance(step, HttpStep):
            faults += http_step_faults(step.url, step.headers, at)
        faults += _signal_faults(wf, step, at, names, sample, base, roots)
        for j, edge in enumerate(step.next):
            if edge.condition is None:
                continue
            target = edge.step
            edge_scope = _Scope(
                names, dag.ancestors[target], f"the edge {step.id} -> {target}", wf, roots
            )
            faults += _condition_faults(
                edge.condition, f"{at}.next[{j}].if", edge_scope, sample, base
            )
        if isinstance(step, ForeachStep | WhileStep):
            faults += _loop_faults(wf, step, at, names, sample, step_sample, base, roots)
    return faults


def _loop_faults(
    wf: Workflow,
    step: ForeachStep | WhileStep,
    at: str,
    names: frozenset[str],
    sample: dict[str, Any],
    step_sample: dict[str, Any],
    base: Mapping[str, Any],
    roots: frozenset[str],
) -> Faults:
    """A loop's items (or range) or condition, and its body, in the scope of its iterations."""
    upstream = wf.dag.ancestors[step.id]
    faults: Faults = []
    if isinstance(step, ForeachStep):
        # Evaluated once, before any iteration: no `iteration` yet.
        scope = _Scope(names, upstream, f"the items of step {step.id!r}", wf, roots)
        sources = [(step.items, f"{at}.items", "list")] if isinstance(step.items, str) else []
        if step.range is not None:
            for part in ("start", "end", "step"):
                raw = getattr(step.range, part)
                if isinstance(raw, str):
                    sources.append((raw, f"{at}.range.{part}", "long"))
        for src, path, kind in sources:
            assert isinstance(src, str)
            found, run_time = _source_faults(src, path, scope)
            faults += found
            if found or run_time:
                continue
            if compile_expression(src).references & (names - sample.keys()):
                continue  # reads a param that could not be evaluated (already reported)
            faults += _value_kind_fault(src, path, kind, context(sample, base))
    else:
        scope = _Scope(
            names, upstream, f"the condition of step {step.id!r}", wf, roots | {ITERATION}
        )
        faults += _condition_faults(step.condition, f"{at}.condition", scope, sample, base)
    body = load_workflow(wf.bodies[step.id])
    inner = names | frozenset(step.params)
    return faults + _steps_faults(body, inner, step_sample, base, f"{at}.", roots | {ITERATION})


def _value_kind_fault(src: str, path: str, kind: str, ctx: Mapping[str, Any]) -> Faults:
    try:
        value = compile_expression(src).evaluate(ctx)
    except ExpressionError as err:
        return [(path, f"{err} (evaluated at push time with the default values)")]
    ok = isinstance(value, list) if kind == "list" else type(value) is int
    if ok:
        return []
    return [(path, f"{src!r} must give a {kind}, got {describe(value)} (with the default values)")]
