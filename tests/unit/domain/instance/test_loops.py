"""foreach and while steps: each iteration is a child instance of the loop's inline DAG; the
loop step counts them, starts more as they end, aggregates their outputs and ends."""

from __future__ import annotations

import json
from typing import Any

from services.domain.kernel.errors import DefinitionError
from services.domain.kernel.statuses import FailureKind, InstanceStatus, StepStatus
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import (
    PauseInstance,
    ReportAttemptFailed,
    ReportAttemptSucceeded,
    ReportChildEnded,
    ResumeInstance,
    StopInstance,
)
from services.domain.protocol.routing import iteration_id
from tests.unit.domain.instance.test_subworkflows import World

P = "p~1"


def foreach(**fields: Any) -> dict[str, Any]:
    loop: dict[str, Any] = {
        "id": "each",
        "type": "foreach",
        "items": ["a", "b", "c", "d", "e"],
        "concurrency": 2,
        "params": {"part": {"type": "string", "expression": "iteration.item"}},
        "steps": [
            {"id": "work", "type": "shell", "command": "true", "retry_policy": {"user_limit": 0}}
        ],
        "next": ["after"],
    }
    loop.update(fields)
    return {
        "id": "parent",
        "params": {"n": {"type": "long", "value": 3}},
        "steps": [loop, {"id": "after", "type": "noop"}],
    }


LONG_PART = {"part": {"type": "long", "expression": "iteration.item"}}


def run(w: World, definition: dict[str, Any]) -> None:
    w.push(definition)
    w.start("parent", P)


def it(index: int, attempt: int = 1) -> str:
    return iteration_id(P, "each", attempt, index)


def succeed(w: World, iid: str, step: str = "work", outputs: str = "{}") -> list[str]:
    attempt = w.instances[iid].steps[step].attempt
    return w.when(ReportAttemptSucceeded(iid, step, attempt, outputs))


def fail(w: World, iid: str, step: str = "work") -> list[str]:
    attempt = w.instances[iid].steps[step].attempt
    return w.when(ReportAttemptFailed(iid, step, attempt, FailureKind.USER, "exit 1"))


def loop_outputs(w: World) -> dict[str, Any]:
    outputs = w.instances[P].steps["each"].outputs
    assert outputs is not None
    result: dict[str, Any] = json.loads(outputs)
    return result


def test_foreach_runs_an_iteration_per_item_within_its_concurrency() -> None:
    w = World()
    run(w, foreach())
    assert w.step(P, "each") is StepStatus.RUNNING
    assert set(w.instances) == {P, it(0), it(1)}  # concurrency 2
    first = w.instances[it(1)]
    assert json.loads(first.params) == {"n": 3, "part": "b"}  # run params + the loop's, evaluated
    assert json.loads(first.loop or "") == {"index": 1, "item": "b"}
    assert (first.parent_instance_id, first.depth, first.workflow_id) == (P, 1, "parent")

    log = succeed(w, it(0), outputs='{"rows":0}')
    # The iteration ends; its parent counts it and starts the next one, in the same decision.
    assert log[-4:] == [
        f"{P} LoopIterationEnded",
        f"{P} LoopIterationsStarted",
        f"{it(2)} InstanceStarted",
        f"{it(2)} StepAttemptCreated",
    ]
    for i in (1, 2, 3, 4):
        if w.instances.get(it(i)) is None:
            assert w.step(P, "each") is StepStatus.RUNNING
        succeed(w, it(i), outputs=f'{{"rows":{i}}}')
    assert w.step(P, "each") is StepStatus.SUCCEEDED
    assert w.step(P, "after") is StepStatus.STARTING  # the successor runs
    out = loop_outputs(w)
    assert out["iterations"] == 5
    assert out["statuses"] == {"SUCCEEDED": 5}
    assert [r["work"]["rows"] for r in out["results"]] == [0, 1, 2, 3, 4]  # iteration order
    assert out["results_truncated"] is False


def test_a_loop_records_at_most_two_events_per_iteration_in_its_parent() -> None:
    w = World()
    run(w, foreach(items=list(range(40)), concurrency=1, params=LONG_PART))
    for i in range(40):
        succeed(w, it(i))
    parent_events = [line for line in w.log if line.startswith(f"{P} ")]
    # InstanceStarted, StepAttemptCreated, StepAttemptStarted, LoopStarted, StepAttemptSucceeded
    # and the successor's StepAttemptCreated, plus two per iteration.
    assert len(parent_events) == 6 + 2 * 40


def test_foreach_over_a_range_read_from_params() -> None:
    w = World()
    run(
        w,
        foreach(items=None, range={"start": 1, "end": "params.n * 2", "step": 2}, params=LONG_PART),
    )
    assert [json.loads(w.instances[it(i)].loop or "")["item"] for i in (0, 1)] == [1, 3]
    for i in range(3):
        succeed(w, it(i))
    assert loop_outputs(w)["iterations"] == 3  # 1, 3, 5


def test_foreach_over_no_items_succeeds_at_once() -> None:
    w = World()
    run(w, foreach(items=[]))
    assert w.step(P, "each") is StepStatus.SUCCEEDED
    assert loop_outputs(w)["iterations"] == 0


def test_items_that_are_not_a_list_fail_the_step_and_the_instance() -> None:
    w = World()
    w.push(foreach(items="params.n > 2 ? ['a'] : 7"))  # a list with the default n
    w.start("parent", P, {"n": 1})
    assert w.step(P, "each") is StepStatus.INTERNALLY_FAILED
    assert w.status(P) is InstanceStatus.FAILED


def test_a_failed_iteration_stops_new_ones_and_fails_the_loop_once_the_rest_end() -> None:
    w = World()
    run(w, foreach())
    fail(w, it(0))
    assert it(2) not in w.instances  # nothing new starts
    assert w.step(P, "each") is StepStatus.RUNNING  # iteration 1 still runs (FAIL_AFTER_RUNNING)
    succeed(w, it(1))
    assert w.step(P, "each") is StepStatus.USER_FAILED
    assert w.status(P) is InstanceStatus.FAILED


def test_fail_immediately_stops_the_running_iterations() -> None:
    w = World()
    run(w, foreach(failure_mode="FAIL_IMMEDIATELY"))
    log = fail(w, it(0))
    assert w.step(P, "each") is StepStatus.USER_FAILED
    assert f"{it(1)} InstanceStopped" in log
    assert w.status(it(1)) is InstanceStatus.STOPPED


def test_ignore_failure_runs_every_iteration_and_completes_with_error() -> None:
    w = World()
    run(w, foreach(failure_mode="IGNORE_FAILURE"))
    fail(w, it(0))
    for i in range(1, 5):
        succeed(w, it(i))
    assert w.step(P, "each") is StepStatus.COMPLETED_WITH_ERROR
    loop = w.instances[P].steps["each"].loop
    assert loop is not None
    assert dict(loop.counts) == {"FAILED": 1, "SUCCEEDED": 4}
    assert w.status(P) is InstanceStatus.IN_PROGRESS  # the successor runs


def test_stopping_the_parent_stops_its_running_iterations() -> None:
    w = World()
    run(w, foreach())
    log = w.when(StopInstance(P, "enough"))
    assert w.status(P) is InstanceStatus.STOPPED
    assert {w.status(it(0)), w.status(it(1))} == {InstanceStatus.STOPPED}
    assert f"{it(0)} InstanceStopped" in log


def test_no_iteration_starts_while_the_parent_is_paused() -> None:
    w = World()
    run(w, foreach(concurrency=1))
    w.when(PauseInstance(P))
    succeed(w, it(0))
    assert it(1) not in w.instances
    w.when(ResumeInstance(P))
    assert w.status(it(1)) is InstanceStatus.IN_PROGRESS


def test_a_duplicate_or_late_report_of_an_iteration_changes_nothing() -> None:
    w = World()
    run(w, foreach())
    succeed(w, it(0))
    again = ReportChildEnded(P, "each", 1, it(0), InstanceStatus.SUCCEEDED, "{}", iteration=0)
    assert w.when(again) == []


def test_foreach_nests() -> None:
    inner = {
        "id": "inner",
        "type": "foreach",
        "items": "[part, part + part]",
        "steps": [{"id": "leaf", "type": "noop"}],
    }
    w = World()
    run(w, foreach(items=["x"], steps=[inner]))
    leaf = iteration_id(it(0), "inner", 1, 1)
    assert json.loads(w.instances[leaf].loop or "") == {"index": 1, "item": "xx"}
    assert w.instances[leaf].depth == 2
    succeed(w, iteration_id(it(0), "inner", 1, 0), "leaf")
    succeed(w, leaf, "leaf")
    assert w.status(it(0)) is InstanceStatus.SUCCEEDED
    assert w.step(P, "each") is StepStatus.SUCCEEDED


def whiles(**fields: Any) -> dict[str, Any]:
    loop: dict[str, Any] = {
        "id": "each",
        "type": "while",
        "condition": "iteration.index == 0 || iteration.outputs.train.loss > 0.1",
        "max_iterations": 5,
        "params": {"epoch": {"type": "long", "expression": "iteration.index"}},
        "steps": [{"id": "train", "type": "shell", "command": "true"}],
    }
    loop.update(fields)
    return {"id": "parent", "steps": [loop]}


def test_while_repeats_its_body_until_the_condition_is_false() -> None:
    w = World()
    run(w, whiles())
    assert json.loads(w.instances[it(0)].params) == {"epoch": 0}
    succeed(w, it(0), "train", '{"loss":0.5}')
    assert json.loads(w.instances[it(1)].loop or "") == {
        "index": 1,
        "outputs": {"train": {"loss": 0.5}},
    }
    succeed(w, it(1), "train", '{"loss":0.05}')
    assert w.step(P, "each") is StepStatus.SUCCEEDED
    out = loop_outputs(w)
    assert (out["iterations"], out["last"]) == (2, {"train": {"loss": 0.05}})
    assert w.status(P) is InstanceStatus.SUCCEEDED


def test_while_fails_when_the_condition_still_holds_at_its_cap() -> None:
    w = World()
    run(w, whiles(condition="true", max_iterations=2))
    succeed(w, it(0), "train")
    succeed(w, it(1), "train")
    assert w.step(P, "each") is StepStatus.USER_FAILED
    assert it(2) not in w.instances


def test_a_while_condition_that_is_not_boolean_fails_the_step() -> None:
    w = World()
    run(w, whiles(condition="iteration.index"))
    assert w.step(P, "each") is StepStatus.INTERNALLY_FAILED


def test_an_iteration_whose_params_do_not_evaluate_fails_the_loop_and_starts_nothing() -> None:
    w = World()
    run(w, foreach(items=[1, 2]))  # `part` is a string; the items are longs
    assert w.step(P, "each") is StepStatus.INTERNALLY_FAILED
    assert set(w.instances) == {P}


def faults_of(definition: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        parse_workflow(definition)
    except DefinitionError as err:
        return err.faults
    return []


def test_faults_inside_a_loop_body_are_reported_at_their_path() -> None:
    body: list[dict[str, Any]] = [
        {"id": "x", "type": "noop", "next": ["nowhere"]},
        {"id": "y", "type": "shell", "command": "echo", "params": {"v": "${params.zz}"}},
    ]
    assert faults_of(foreach(steps=body)) == [
        ("steps[0].steps[0].next[0]", "unknown step 'nowhere'")
    ]
    body[0]["next"] = []
    assert faults_of(foreach(steps=body)) == [
        ("steps[0].steps[1].params.v.value", "unknown param 'zz' in 'params.zz'")
    ]
    body[1]["type"] = "nope"
    assert faults_of(foreach(steps=body))[0][0] == "steps[0].steps[1].type"


def test_a_body_reads_the_loops_params_and_the_iteration() -> None:
    body = [
        {
            "id": "y",
            "type": "shell",
            "command": "echo",
            "params": {"v": "${part}-${iteration.index}"},
        }
    ]
    assert faults_of(foreach(steps=body)) == []


def test_only_a_loop_reads_the_iteration() -> None:
    wf = {
        "id": "w",
        "steps": [
            {
                "id": "a",
                "type": "noop",
                "params": {"v": {"type": "long", "expression": "iteration.index"}},
            }
        ],
    }
    assert faults_of(wf) == [
        (
            "steps[0].params.v.expression",
            "'iteration.index' reads 'iteration', which step 'a' cannot see"
            " (only a loop's params, condition and steps run in an iteration)",
        )
    ]


def test_items_and_conditions_are_checked_at_push_time() -> None:
    assert faults_of(foreach(items="params.n")) == [
        ("steps[0].items", "'params.n' must give a list, got a long (with the default values)")
    ]
    assert faults_of(foreach(items=None)) == [
        ("steps[0]", "Value error, give either items or range")
    ] or faults_of(foreach(items=None))[0][1].endswith("give either items or range")
    assert faults_of(whiles(condition="iteration.index + 1")) == [
        (
            "steps[0].condition",
            "'iteration.index + 1' is not a boolean expression; a condition must be one",
        )
    ]


def test_loops_nest_at_most_ten_deep() -> None:
    step: dict[str, Any] = {"id": "leaf", "type": "noop"}
    for depth in range(10):
        step = {"id": f"l{depth}", "type": "foreach", "items": [1], "steps": [step]}
    assert faults_of({"id": "w", "steps": [step]}) == []  # iterations at depth 10
    step = {"id": "l10", "type": "foreach", "items": [1], "steps": [step]}
    faults = faults_of({"id": "w", "steps": [step]})
    assert faults == [("steps[0]" + ".steps[0]" * 10 + ".steps", "loops nest at most 10 deep")]
