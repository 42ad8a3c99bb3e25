"""The served OpenAPI document against the real API process: schemathesis generates requests
for every operation from the document, valid ones and ones that break a declared rule, and
checks each answer — no 5xx, a status, content type, headers and body the document declares
for the operation, invalid input refused and valid input not refused for being invalid.

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


# A definition's rules go beyond what JSON Schema can say (step types and their fields, the
# DAG: unknown successors, cycles), so a schema-valid definition may well be refused with a
# 422 that lists its faults: "valid data accepted" does not apply to these two.
_SEMANTIC_BODIES = {"POST /api/v1/workflows", "POST /api/v1/workflows/validate"}


def _run(case: Case[Any], base_url: str) -> None:
    # A random instance id is never found, so `wait_seconds` would make each such example
    # wait its full value (up to 30 s): the wait itself is not what is fuzzed here.
    if case.query and "wait_seconds" in case.query:
        case.query["wait_seconds"] = 0
    excluded = [positive_data_acceptance] if case.operation.label in _SEMANTIC_BODIES else []
    case.call_and_validate(base_url=base_url, timeout=10, excluded_checks=excluded)


def test_every_operation_answers_as_the_served_document_says(
    stack: Stack, settings: Settings
) -> None:
    base_url = f"http://{settings.api_host}:{settings.api_port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is invalid
        operation = result.ok()
        operations += 1
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])
        for mode in modes:

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_MODE,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Case[Any]) -> None:
                _run(case, base_url)

            try:
                fuzz()
            # Every operation's failures are listed, not only the first (schemathesis raises
            # a FailureGroup, a BaseExceptionGroup).
            except (Exception, FailureGroup) as err:
                failures.append(f"{operation.label} [{mode.value}]: {_describe(err)}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)


def _describe(err: Any) -> str:
    return f"{type(err).__name__}: {err}"[:3000]
