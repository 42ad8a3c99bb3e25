"""Params reach shell steps as environment variables: the names that decide what a step
executes (PATH, LD_PRELOAD, BASH_ENV …) are refused wherever a param is named — at push for
declared and step params, and in every set of params given later (check_overrides: start,
restart, signal trigger, subworkflow start)."""

from __future__ import annotations

from typing import Any

import pytest

from services.domain.kernel.errors import DefinitionError
from services.domain.language.environment import reserved_env_fault, reserved_env_name
from services.domain.language.evaluation import check_overrides
from services.domain.language.parse import parse_workflow


def faults_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(DefinitionError) as err:
        parse_workflow(data)
    return dict(err.value.faults)


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "HOME",
        "IFS",
        "ENV",
        "BASH_ENV",
        "PS4",
        "SHELLOPTS",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "GIT_SSH_COMMAND",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "LC_ALL",
        "BATON_INSTANCE_ID",
        "BATON_SQL_CONNECTIONS",
        "http_proxy",
    ],
)
def test_names_a_step_reads_from_its_environment_are_reserved(name: str) -> None:
    assert reserved_env_name(name)
    fault = reserved_env_fault(name)
    assert fault is not None and f"{name!r} is reserved" in fault


@pytest.mark.parametrize("name", ["path", "date", "home", "rows", "PIDFILE", "REGION", "Path"])
def test_ordinary_names_are_not_reserved_and_case_matters(name: str) -> None:
    assert not reserved_env_name(name)
    assert reserved_env_fault(name) is None


def test_given_a_workflow_param_named_path_when_pushed_then_refused_with_its_path() -> None:
    found = faults_of(
        {"id": "w", "params": {"PATH": "/tmp/evil"}, "steps": [{"id": "a", "type": "noop"}]}
    )
    assert "'PATH' is reserved" in found["params.PATH"]


def test_given_a_step_param_or_a_loop_param_with_a_reserved_name_then_refused() -> None:
    found = faults_of(
        {
            "id": "w",
            "steps": [
                {
                    "id": "a",
                    "type": "shell",
                    "command": "ls",
                    "params": {"LD_PRELOAD": "/tmp/evil.so"},
                    "next": ["loop"],
                },
                {
                    "id": "loop",
                    "type": "foreach",
                    "items": "[1, 2]",
                    "params": {"BASH_ENV": "/tmp/evil.sh"},
                    "steps": [
                        {
                            "id": "inner",
                            "type": "shell",
                            "command": "true",
                            "params": {"GIT_SSH_COMMAND": "sh -c id"},
                        }
                    ],
                },
            ],
        }
    )
    assert "'LD_PRELOAD' is reserved" in found["steps[0].params.LD_PRELOAD"]
    assert "'BASH_ENV' is reserved" in found["steps[1].params.BASH_ENV"]
    assert "'GIT_SSH_COMMAND' is reserved" in found["steps[1].steps[0].params.GIT_SSH_COMMAND"]


def test_given_undeclared_reserved_params_at_start_or_restart_then_each_is_refused() -> None:
    w = parse_workflow({"id": "w", "steps": [{"id": "a", "type": "noop"}]})
    for restart in (False, True):
        with pytest.raises(DefinitionError) as err:
            check_overrides(w, {"PATH": "/tmp", "LD_PRELOAD": "x.so", "day": "mon"}, restart)
        found = dict(err.value.faults)
        assert set(found) == {"params.PATH", "params.LD_PRELOAD"}
        assert "'PATH' is reserved" in found["params.PATH"]


def test_given_start_params_whose_names_are_no_param_names_then_refused() -> None:
    w = parse_workflow({"id": "w", "steps": [{"id": "a", "type": "noop"}]})
    with pytest.raises(DefinitionError) as err:
        check_overrides(w, {"bad-name": 1, "1st": 2, "": 3, "ok": 4})
    assert set(dict(err.value.faults)) == {"params.bad-name", "params.1st", "params."}


def test_a_param_name_with_a_trailing_newline_is_no_param_name() -> None:
    """`$` in a pattern also matches before a final newline: `x\\n` passed the push-time check
    and reached the worker, which refused it as no environment variable name."""
    found = faults_of({"id": "w", "params": {"x\n": "1"}, "steps": [{"id": "a", "type": "noop"}]})
    assert found == {
        "params.x\n": "a param name is letters, digits and _, not starting with a digit"
    }
