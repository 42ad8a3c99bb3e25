"""A step's text reaches the read models through its report, and PostgreSQL cannot hold a NUL
character: a shell step that printed one, or wrote one into `$BATON_OUTPUTS`, made the
projector exit. The worker never reports one: in an output tail or a message each NUL
becomes U+FFFD; outputs holding one (in any string or key) are a USER failure naming the
path, whatever the step type (issue 14, poison events)."""

from __future__ import annotations

from typing import Any

import pytest

from services.adapters.settings import REPO_ROOT
from services.domain.kernel.statuses import FailureKind
from services.worker.runtimes.contract import StepFailure, StepSuccess, failure, reportable
from services.worker.runtimes.python import PythonRuntime
from services.worker.runtimes.shell import ShellRuntime
from tests.unit.worker.test_runtimes import failed, python, shell

NUL = "\x00"


async def test_a_nul_in_a_shell_steps_output_reaches_its_tail_as_a_replacement_character() -> None:
    outcome = await ShellRuntime().run(shell(r"printf 'before\000after'; exit 3"))
    f = failed(outcome, FailureKind.USER)
    assert NUL not in f.output_tail
    assert "before\ufffdafter" in f.output_tail


async def test_a_nul_in_a_python_steps_output_reaches_its_tail_as_a_replacement_character() -> None:
    py = PythonRuntime(cwd=str(REPO_ROOT))
    outcome = await py.run(python(f"{__name__}:prints_nul_and_fails"))
    f = failed(outcome, FailureKind.USER)
    assert NUL not in f.output_tail + f.message
    assert "before\ufffdafter" in f.output_tail


def prints_nul_and_fails() -> None:
    print(f"before{NUL}after", flush=True)
    raise RuntimeError(f"bad{NUL}value")


async def test_a_shell_step_writing_a_nul_into_its_outputs_fails_naming_the_path() -> None:
    command = r"""printf '{"ok": 1, "rows": [{"note": "a\\u0000b"}]}' > "$BATON_OUTPUTS" """
    outcome = reportable(await ShellRuntime().run(shell(command)))
    f = failed(outcome, FailureKind.USER)
    assert f.message == "outputs.rows[0].note: a string may not hold a NUL character"


async def test_a_python_step_returning_a_nul_in_a_key_fails_naming_the_path() -> None:
    py = PythonRuntime(cwd=str(REPO_ROOT))
    outcome = reportable(await py.run(python(f"{__name__}:returns_nul_key")))
    f = failed(outcome, FailureKind.USER)
    # The key as it is, but for its NUL, which a report never carries (see `failure`).
    assert f.message == "outputs.m.k\ufffd: a string may not hold a NUL character"


def returns_nul_key() -> dict[str, Any]:
    return {"m": {f"k{NUL}": 1}}


@pytest.mark.parametrize(
    ("outputs", "path"),
    [
        # an http step's response body, as text or as JSON
        ({"status": 200, "headers": {}, "body": f"bin{NUL}ary"}, "outputs.body"),
        ({"status": 200, "headers": {}, "body": {"a": [f"{NUL}"]}}, "outputs.body.a[0]"),
        # a sql step's rows (a bytea column decoded, another database's text)
        ({"rows": [{"c": f"x{NUL}"}], "row_count": 1, "truncated": False}, "outputs.rows[0].c"),
    ],
)
def test_outputs_holding_a_nul_are_a_user_failure(outputs: dict[str, Any], path: str) -> None:
    f = failed(reportable(StepSuccess(outputs)), FailureKind.USER)
    assert f.message == f"{path}: a string may not hold a NUL character"


def test_outputs_without_a_nul_are_reported_as_they_are() -> None:
    outcome = StepSuccess({"body": "\\u0000 is six characters here", "n": 1})
    assert reportable(outcome) == outcome


def test_a_failure_message_or_tail_holding_a_nul_is_reported_with_replacement_characters() -> None:
    f = failure(FailureKind.USER, f"HTTP 500: a{NUL}b", f"body{NUL}{NUL}")
    assert (f.message, f.output_tail) == ("HTTP 500: a\ufffdb", "body\ufffd\ufffd")
    assert reportable(StepFailure(FailureKind.PLATFORM, f"x{NUL}")) == StepFailure(
        FailureKind.PLATFORM, "x\ufffd"
    )


def test_outputs_holding_a_lone_surrogate_are_a_user_failure() -> None:
    f = failed(reportable(StepSuccess({"k": ["ok", "a\ud800"]})), FailureKind.USER)
    assert f.message == "outputs.k[1]: a string may not hold a lone surrogate"
    assert reportable(StepSuccess({"smile": "\U0001f600"})) == StepSuccess({"smile": "\U0001f600"})
