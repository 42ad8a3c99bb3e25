"""What is derived once from a validated definition: its graph (successors, predecessors, a
topological order, ancestors, the conditions on edges), the order its params are evaluated
in, and each step's task config. Built once per version (Workflow.dag), shared by every
instance of it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from services.domain.kernel.errors import ExpressionError
from services.domain.kernel.statuses import StepStatus
from services.domain.language.expressions import compile_expression, member_paths, value_templates
from services.domain.language.steps import (
    LOOP_STEP_TYPES,
    MAX_SUBWORKFLOW_DEPTH,
    ForeachStep,
    Step,
    WhileStep,
)

if TYPE_CHECKING:
    from services.domain.language.fields import Param
    from services.domain.language.workflow import Workflow


# What a worker's runtime needs of each step type, sent in the task's config.
TASK_CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    "shell": ("command",),
    "python": ("function",),
    "http": ("url", "method", "headers", "body", "expected_statuses", "max_response_bytes"),
    "sql": ("connection", "statement", "args", "max_rows", "read_only"),
}


class Dag:
    """Graph views of a validated workflow (built once per definition)."""

    def __init__(self, wf: Workflow) -> None:
        # What a worker needs of each step (canonical JSON), sent as the config of its tasks.
        self.task_configs: Mapping[str, str] = {
            s.id: json.dumps(
                s.model_dump(mode="json", include=set(TASK_CONFIG_FIELDS.get(s.type, ()))),
                sort_keys=True,
                separators=(",", ":"),
            )
            for s in wf.steps
        }
        self.steps: dict[str, Step] = {s.id: s for s in wf.steps}
        preds: dict[str, list[str]] = {s.id: [] for s in wf.steps}
        # The condition on each conditional edge (predecessor, successor).
        self.conditions: dict[tuple[str, str], str] = {}
        for s in wf.steps:
            for n in s.next:
                preds[n.step].append(s.id)
                if n.condition is not None:
                    self.conditions[(s.id, n.step)] = n.condition
        self.predecessors: Mapping[str, tuple[str, ...]] = {k: tuple(v) for k, v in preds.items()}
        self.successors: Mapping[str, tuple[str, ...]] = {
            s.id: tuple(n.step for n in s.next) for s in wf.steps
        }
        self.loop_steps: tuple[str, ...] = tuple(
            s.id for s in wf.steps if s.type in LOOP_STEP_TYPES
        )
        # Definition order: how steps are listed (read models, restarts).
        self.order: tuple[str, ...] = tuple(s.id for s in wf.steps)
        self.roots: tuple[str, ...] = tuple(k for k in self.order if not preds[k])
        # A topological order (definition order among equals): one pass in it sees every
        # predecessor's decision before its successors'.
        self.topo: tuple[str, ...] = _topological(self.order, self.predecessors, self.successors)
        self.ancestors: Mapping[str, frozenset[str]] = _ancestors(self.topo, self.predecessors)
        outer = frozenset(wf.params)
        # Per step: the order its own params are evaluated in, and whether any is dynamic.
        self.param_order: Mapping[str, tuple[str, ...]] = {
            s.id: order_params(param_dependencies(s.params, outer))[0] for s in wf.steps
        }
        self.dynamic_params: Mapping[str, bool] = {
            s.id: any(p.dynamic for p in s.params.values()) for s in wf.steps
        }
        # Per step: the steps whose status and outputs its params and incoming conditions
        # read (all its ancestors when one indexes `steps` with a computed key).
        self.steps_read: Mapping[str, frozenset[str]] = {
            s.id: self._steps_read(s.id) for s in wf.steps
        }

    def _steps_read(self, step_id: str) -> frozenset[str]:
        sources = [src for p in self.steps[step_id].params.values() for src, _ in param_sources(p)]
        sources += [c for (_, to), c in self.conditions.items() if to == step_id]
        read: set[str] = set()
        for src in sources:
            try:
                paths = member_paths(src)
            except ExpressionError:
                continue
            if paths.steps_dynamic:
                return self.ancestors[step_id]
            read |= paths.steps
        return frozenset(read)

    def incomplete_upstream(self, step_id: str, status_of: Mapping[str, StepStatus]) -> str | None:
        """The first step upstream of `step_id` (definition order) that did not complete, or
        None: a step can run again from a restart only when its inputs stand."""
        upstream = self.ancestors[step_id]
        return next((a for a in self.order if a in upstream and not status_of[a].is_complete), None)

    def downstream_of(self, step_id: str) -> tuple[str, ...]:
        """The step and everything downstream of it, in definition order."""
        return tuple(sid for sid in self.order if sid == step_id or step_id in self.ancestors[sid])


def _topological(
    order: tuple[str, ...],
    predecessors: Mapping[str, tuple[str, ...]],
    successors: Mapping[str, tuple[str, ...]],
) -> tuple[str, ...]:
    waiting = {k: len(predecessors[k]) for k in order}
    rank = {k: i for i, k in enumerate(order)}
    ready = [k for k in order if not waiting[k]]
    out: list[str] = []
    while ready:
        ready.sort(key=rank.__getitem__, reverse=True)
        k = ready.pop()
        out.append(k)
        for n in successors[k]:
            waiting[n] -= 1
            if not waiting[n]:
                ready.append(n)
    return tuple(out)


def _ancestors(
    topo: tuple[str, ...], predecessors: Mapping[str, tuple[str, ...]]
) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for k in topo:
        acc: set[str] = set(predecessors[k])
        for p in predecessors[k]:
            acc |= out[p]
        out[k] = frozenset(acc)
    return out


def graph_faults(wf: Workflow) -> list[tuple[str, str]]:
    """Faults of the step graph, and of each loop's inline graph (which nest at most
    MAX_SUBWORKFLOW_DEPTH deep)."""
    return _graph_faults(wf.steps, "", 0)


def _graph_faults(steps: list[Step], prefix: str, depth: int) -> list[tuple[str, str]]:
    faults = _dag_faults(steps, prefix)
    for i, s in enumerate(steps):
        if not isinstance(s, ForeachStep | WhileStep):
            continue
        body = s.steps
        if depth + 1 > MAX_SUBWORKFLOW_DEPTH:
            faults.append(
                (f"{prefix}steps[{i}].steps", f"loops nest at most {MAX_SUBWORKFLOW_DEPTH} deep")
            )
        else:
            faults += _graph_faults(body, f"{prefix}steps[{i}].", depth + 1)
    return faults


def _dag_faults(steps: list[Step], prefix: str) -> list[tuple[str, str]]:
    faults: list[tuple[str, str]] = []
    index: dict[str, int] = {}
    for i, s in enumerate(steps):
        if s.id in index:
            faults.append(
                (
                    f"{prefix}steps[{i}].id",
                    f"duplicate step id {s.id!r} (first at steps[{index[s.id]}])",
                )
            )
        else:
            index[s.id] = i
    for i, s in enumerate(steps):
        seen: set[str] = set()
        for j, edge in enumerate(s.next):
            n = edge.step
            if n not in index:
                faults.append((f"{prefix}steps[{i}].next[{j}]", f"unknown step {n!r}"))
            elif n == s.id:
                faults.append(
                    (f"{prefix}steps[{i}].next[{j}]", "a step cannot be its own successor")
                )
            elif n in seen:
                faults.append((f"{prefix}steps[{i}].next[{j}]", f"duplicate successor {n!r}"))
            seen.add(n)
    if faults:
        return faults
    cycle = _find_cycle(steps)
    if cycle:
        i = index[cycle[0]]
        j = [n.step for n in steps[i].next].index(cycle[1])
        faults.append((f"{prefix}steps[{i}].next[{j}]", "cycle: " + " -> ".join(cycle)))
    return faults


def _find_cycle(steps: list[Step]) -> list[str] | None:
    nexts = {s.id: [n.step for n in s.next] for s in steps}
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(nexts, white)
    for root in nexts:
        if color[root] != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        color[root] = grey
        while stack:
            node, k = stack[-1]
            if k < len(nexts[node]):
                stack[-1] = (node, k + 1)
                child = nexts[node][k]
                if color[child] == grey:
                    return [*path[path.index(child) :], child]
                if color[child] == white:
                    color[child] = grey
                    stack.append((child, 0))
                    path.append(child)
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None


def param_sources(param: Param) -> list[tuple[str, str]]:
    """Each expression a param evaluates, with the field it sits in (`expression`, `value`,
    `value[2]`, `value.key`)."""
    if param.expression is not None:
        return [(param.expression, "expression")]
    return value_templates(param.value, "value")


def param_reads(param: Param) -> set[str]:
    """The names a param's expressions read, by name or as `params.<name>` (an expression
    that does not compile reads nothing here: the analysis reports it)."""
    names: set[str] = set()
    for src, _ in param_sources(param):
        try:
            names |= compile_expression(src).references | member_paths(src).params
        except ExpressionError:
            continue
    return names


def param_dependencies(params: Mapping[str, Param], outer: frozenset[str]) -> dict[str, set[str]]:
    """For each param, the params of the same map it reads. A param that names itself reads
    the outer param of that name (a step's `path: "${path}/x"` refines the workflow's)."""
    deps: dict[str, set[str]] = {}
    for name, p in params.items():
        names = param_reads(p) & params.keys()
        if name in outer:
            names.discard(name)
        deps[name] = names
    return deps


def order_params(deps: Mapping[str, set[str]]) -> tuple[tuple[str, ...], list[str] | None]:
    """An evaluation order (dependencies first, then by name), and a cycle if there is one."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        if state.get(name) == 2:
            return None
        if state.get(name) == 1:
            return [*path[path.index(name) :], name]
        state[name] = 1
        for dep in sorted(deps[name]):
            cycle = visit(dep, [*path, name])
            if cycle:
                return cycle
        state[name] = 2
        order.append(name)
        return None

    for name in sorted(deps):
        cycle = visit(name, [])
        if cycle:
            return tuple(order), cycle
    return tuple(order), None
