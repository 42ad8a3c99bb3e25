"""Conditional branches, step outputs as params, and evaluation failures, in given-events /
when-command / then-events form."""

from __future__ import annotations

import json

import pytest

from services.domain.instance.evolve import fold
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import InstanceStatus, RestartMode, StepStatus
from services.domain.protocol.commands import (
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    RestartInstance,
    StartInstance,
)
from services.domain.protocol.events import (
    InstanceFailed,
    InstanceRestarted,
    InstanceStarted,
    StepAttemptCreated,
    StepEvaluationFailed,
    StepUnsatisfied,
)
from tests.unit.domain.given import IID, History, S, start, workflow_json


def succeed(
    h: History, step: str, outputs: dict[str, object] | None = None, attempt: int = 1
) -> list[str]:
    h.when(ReportAttemptStarted(IID, step, attempt, "w1"))
    return h.types(ReportAttemptSucceeded(IID, step, attempt, json.dumps(outputs or {})))


def status(h: History, step: str) -> StepStatus:
    assert h.state is not None
    return h.state.steps[step].status


# a -> (b if rows > 0) -> d ; a -> (c if rows == 0) -> d ; d is a join of the two branches
BRANCHES = workflow_json(
    [
        {
            "id": "a",
            "type": "noop",
            "next": [
                {"step": "b", "if": "steps.a.outputs.rows > params.min"},
                {"step": "c", "if": "steps.a.outputs.rows <= params.min"},
            ],
        },
        {"id": "b", "type": "noop", "next": ["b2"]},
        {"id": "b2", "type": "noop", "next": ["d"]},
        {"id": "c", "type": "noop", "next": ["d"]},
        {
            "id": "d",
            "type": "noop",
            "params": {"rows": {"type": "long", "expression": "steps.a.outputs.rows"}},
        },
    ],
    params={"min": 0},
)


def test_given_a_false_condition_then_its_branch_is_unsatisfied_and_the_join_runs() -> None:
    h = History()
    h.when(start(BRANCHES))
    out = h.when(ReportAttemptStarted(IID, "a", 1, "w1"))
    out = h.when(ReportAttemptSucceeded(IID, "a", 1, '{"rows": 0}'))
    types = [type(p).__name__ for p in out]
    # b's condition is false: b and b2 (its whole branch) are unsatisfied; c runs.
    assert types == [
        "StepAttemptSucceeded",
        "StepUnsatisfied",
        "StepUnsatisfied",
        "StepAttemptCreated",
    ]
    unsatisfied = [p for p in out if isinstance(p, StepUnsatisfied)]
    assert [(p.step_id, p.reason) for p in unsatisfied] == [
        ("b", "a -> b: steps.a.outputs.rows > params.min is false"),
        ("b2", "b was unsatisfied"),
    ]
    # The join waits only for the branch that can still run.
    assert succeed(h, "c") == ["StepAttemptSucceeded", "StepAttemptCreated"]
    created = h.events[-1].payload
    assert isinstance(created, StepAttemptCreated) and created.step_id == "d"
    # The step's expression param read the upstream output; the value is in the event.
    assert json.loads(created.params) == {"min": 0, "rows": 0}
    assert succeed(h, "d") == ["StepAttemptSucceeded", "InstanceSucceeded"]
    assert status(h, "b") is StepStatus.UNSATISFIED


def test_given_every_incoming_edge_false_then_the_step_and_all_downstream_are_unsatisfied() -> None:
    definition = workflow_json(
        [
            {"id": "a", "type": "noop", "next": [{"step": "b", "if": "params.go"}]},
            {"id": "b", "type": "noop", "next": ["c"]},
            {"id": "c", "type": "noop"},
        ],
        params={"go": False},
    )
    h = History()
    h.when(start(definition))
    assert succeed(h, "a") == [
        "StepAttemptSucceeded",
        "StepUnsatisfied",
        "StepUnsatisfied",
        "InstanceSucceeded",
    ]
    # A start override turns the branch on.
    h2 = History()
    h2.when(StartInstance(IID, "wf", 1, definition, '{"go": true}', "test", None))
    assert succeed(h2, "a") == ["StepAttemptSucceeded", "StepAttemptCreated"]


def test_given_a_condition_that_fails_at_run_time_then_the_step_fails_internally_and_the_instance_fails() -> (
    None
):
    h = History()
    h.when(start(BRANCHES))
    h.when(ReportAttemptStarted(IID, "a", 1, "w1"))
    out = h.when(ReportAttemptSucceeded(IID, "a", 1, '{"rows": "many"}'))
    failed = [p for p in out if isinstance(p, StepEvaluationFailed)]
    assert [p.step_id for p in failed] == ["b"]
    assert failed[0].message.startswith("condition of a -> b: 'steps.a.outputs.rows > params.min':")
    end = out[-1]
    assert isinstance(end, InstanceFailed) and end.failed_steps == ("b",)
    assert status(h, "b") is StepStatus.INTERNALLY_FAILED
    # c was never created: evaluation failures end the run at once.
    assert status(h, "c") is StepStatus.NOT_CREATED


def test_given_a_missing_output_then_the_step_param_fails_with_the_expression_named() -> None:
    definition = workflow_json(
        [
            {"id": "a", "type": "noop", "next": ["b"]},
            {
                "id": "b",
                "type": "noop",
                "params": {"n": {"type": "long", "expression": "steps.a.outputs.n"}},
            },
        ]
    )
    h = History()
    h.when(start(definition))
    out = h.when(ReportAttemptStarted(IID, "a", 1, "w1"))
    out = h.when(ReportAttemptSucceeded(IID, "a", 1, "{}"))
    assert [type(p).__name__ for p in out] == [
        "StepAttemptSucceeded",
        "StepEvaluationFailed",
        "InstanceFailed",
    ]
    assert isinstance(out[1], StepEvaluationFailed)
    assert out[1].message.startswith("param n: 'steps.a.outputs.n':")


def test_given_start_params_that_cannot_be_evaluated_then_the_instance_starts_and_fails() -> None:
    with pytest.raises(Exception, match="division by zero"):
        # The same evaluation rejects the definition at push time with the defaults …
        workflow_json(
            [{"id": "a", "type": "noop"}], params={"q": {"type": "long", "expression": "10 / 0"}}
        )
    h = History()
    definition = workflow_json(
        [{"id": "a", "type": "noop"}],
        params={"d": 1, "q": {"type": "long", "expression": "10 / d"}},
    )
    # … and a start override can still break it: the failure is recorded, nothing runs.
    out = h.when(StartInstance(IID, "wf", 1, definition, '{"d": 0}', "test", None))
    assert [type(p).__name__ for p in out] == ["InstanceStarted", "InstanceFailed"]
    assert isinstance(out[1], InstanceFailed)
    assert "param q" in out[1].reason and "division by zero" in out[1].reason


def test_built_ins_are_the_recorded_start_so_replay_never_reads_a_clock() -> None:
    definition = workflow_json(
        [
            {
                "id": "a",
                "type": "noop",
                "params": {"hour": {"type": "long", "expression": "instance.run_hour"}},
            }
        ],
        time_zone="Asia/Tokyo",
        params={"day": "${instance.run_date}/${workflow.id}/${instance.id}"},
    )
    h = History()
    out = h.when(start(definition), at=1_704_067_200 * S)  # 2024-01-01T00:00:00Z = 09:00 in Tokyo
    begun = out[0]
    assert isinstance(begun, InstanceStarted)
    assert json.loads(begun.params) == {"day": f"2024-01-01/wf/{IID}"}
    created = out[1]
    assert isinstance(created, StepAttemptCreated) and json.loads(created.params)["hour"] == 9
    assert fold(h.events) == h.state


def test_given_a_restart_with_overrides_then_modes_apply_and_the_new_params_are_recorded() -> None:
    definition = workflow_json(
        [{"id": "a", "type": "noop"}],
        params={
            "n": 1,
            "fixed": {"type": "long", "value": 1, "mode": "MUTABLE_ON_START"},
            "label": {"type": "string", "value": "run ${instance.run} n=${n}", "mode": "IMMUTABLE"},
        },
    )
    h = History()
    h.when(start(definition))
    succeed(h, "a")
    with pytest.raises(Rejected, match="MUTABLE_ON_START: it cannot change at restart"):
        h.when(RestartInstance(IID, RestartMode.FROM_BEGINNING, params='{"fixed": 2}'))
    out = h.when(RestartInstance(IID, RestartMode.FROM_BEGINNING, params='{"n": 5}'), at=10 * S)
    restarted = out[0]
    assert isinstance(restarted, InstanceRestarted) and restarted.params is not None
    assert json.loads(restarted.params) == {"n": 5, "fixed": 1, "label": "run 2 n=5"}
    created = out[1]
    assert isinstance(created, StepAttemptCreated) and json.loads(created.params)["n"] == 5
    assert h.state is not None and h.state.status is InstanceStatus.IN_PROGRESS
    assert fold(h.events) == h.state


def test_a_restart_from_incomplete_keeps_unsatisfied_steps() -> None:
    definition = workflow_json(
        [
            {"id": "a", "type": "noop", "next": [{"step": "b", "if": "false"}, "c"]},
            {"id": "b", "type": "noop"},
            {"id": "c", "type": "shell", "command": "x", "retry_policy": {"user_limit": 0}},
        ]
    )
    h = History()
    h.when(start(definition))
    succeed(h, "a")
    from services.domain.kernel.statuses import FailureKind
    from services.domain.protocol.commands import ReportAttemptFailed

    h.when(ReportAttemptStarted(IID, "c", 1, "w1"))
    h.when(ReportAttemptFailed(IID, "c", 1, FailureKind.USER, "boom"))
    assert h.state is not None and h.state.status is InstanceStatus.FAILED
    out = h.when(RestartInstance(IID))
    restarted = out[0]
    assert isinstance(restarted, InstanceRestarted) and restarted.reset_steps == ("c",)
    assert restarted.params is None  # unchanged
