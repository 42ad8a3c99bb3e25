"""The served OpenAPI document against the real API process: schemathesis generates requests
for every operation from the document, valid ones and ones that break a declared rule, and
checks each answer — no 5xx, a status, content type, headers and body the document declares
for the operation, invalid input refused and valid input not refused for being invalid.

Some valid cases of every operation are also sent as a page would send them after DNS
rebinding (a foreign `Host`: 400 `host-not-allowed`) and, for writes, from a foreign web page
(a foreign `Origin`: 403 `origin-not-allowed`), and checked the same way: the refusal is
declared, and it is the answer whatever the case holds.

Bounded and repeatable: a few derandomized examples per operation and generation mode.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import Case, GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from services.adapters.settings import Settings
from services.cli.stack import Stack

pytestmark = pytest.mark.e2e

EXAMPLES_PER_MODE = 25
FOREIGN_EXAMPLES = 4
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# (what is foreign, the headers that say so, the answer and its problem type)
_FOREIGN_HOST = ("Host", {"Host": "rebound.example"}, 400, "host-not-allowed")
_FOREIGN_ORIGIN = ("Origin", {"Origin": "https://page.example"}, 403, "origin-not-allowed")


# A definition's rules go beyond what JSON Schema can say (step types and their fields, the
# DAG: unknown successors, cycles), so a schema-valid definition may well be refused with a
# 422 that lists its faults: "valid data accepted" does not apply to these two.
_SEMANTIC_BODIES = {"POST /api/v1/workflows", "POST /api/v1/workflows/validate"}


def _run(
    case: Case[Any], base_url: str, foreign: tuple[str, dict[str, str], int, str] | None = None
) -> None:
    # A random instance id is never found, so `wait_seconds` would make each such example
    # wait its full value (up to 30 s): the wait itself is not what is fuzzed here.
    if case.query and "wait_seconds" in case.query:
        case.query["wait_seconds"] = 0
    if foreign is None:
        excluded = [positive_data_acceptance] if case.operation.label in _SEMANTIC_BODIES else []
        case.call_and_validate(base_url=base_url, timeout=10, excluded_checks=excluded)
        return
    _, headers, status, kind = foreign
    # Valid data refused: that is the point here, so "valid data accepted" does not apply.
    response = case.call_and_validate(
        base_url=base_url,
        headers=headers,
        timeout=10,
        excluded_checks=[positive_data_acceptance],
    )
    assert response.status_code == status, (case.operation.label, response.text)
    assert response.json()["type"] == f"urn:baton:problem:{kind}"


def test_every_operation_answers_as_the_served_document_says(
    stack: Stack, settings: Settings
) -> None:
    base_url = f"http://{settings.api_host}:{settings.api_port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    foreign_runs = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is invalid
        operation = result.ok()
        operations += 1
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])
        foreign = [_FOREIGN_HOST] + (
            [_FOREIGN_ORIGIN] if operation.method.upper() in _WRITES else []
        )
        runs = [(mode, None) for mode in modes] + [(GenerationMode.POSITIVE, f) for f in foreign]
        for mode, refusal in runs:

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_MODE if refusal is None else FOREIGN_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Case[Any]) -> None:
                _run(case, base_url, refusal)  # noqa: B023 (run at once, below)

            try:
                fuzz()
            # Every operation's failures are listed, not only the first (schemathesis raises
            # a FailureGroup, a BaseExceptionGroup).
            except (Exception, FailureGroup) as err:
                run = mode.value if refusal is None else f"foreign {refusal[0]}"
                failures.append(f"{operation.label} [{run}]: {_describe(err)}")
            foreign_runs += refusal is not None
    assert operations >= 30
    assert foreign_runs > operations  # every operation with a foreign Host, writes an Origin
    assert not failures, "\n\n".join(failures)


def _describe(err: Any) -> str:
    return f"{type(err).__name__}: {err}"[:3000]
