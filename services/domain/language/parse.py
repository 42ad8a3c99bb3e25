"""From a document to a judged Workflow: the model's validation, then the graph's and the expressions' analysis. The model itself (workflow.py) needs none of this."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.domain.kernel.documents import load_text
from services.domain.kernel.errors import DefinitionError
from services.domain.language.analysis import expression_faults
from services.domain.language.dag import graph_faults
from services.domain.language.fields import (
    MAX_CANONICAL_BYTES,
    MAX_DEFINITION_BYTES,
)
from services.domain.language.workflow import Workflow, model_faults


def parse_workflow(data: Any) -> Workflow:
    """Validate a decoded definition; raises DefinitionError listing every fault. `data` is
    assumed bounded in shape (`documents.check_shape`, as `parse_workflow_text` does)."""
    if not isinstance(data, dict):
        raise DefinitionError([("", "a workflow definition must be an object")])
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as err:
        raise DefinitionError(model_faults(err)) from None
    # The size that may be stored, before the graph and the expressions are analysed: those
    # walks cost in proportion to it.
    size = len(wf.to_json().encode())
    if size > MAX_CANONICAL_BYTES:
        raise DefinitionError(
            [
                (
                    "",
                    f"the definition is {size} bytes in canonical form; at most {MAX_CANONICAL_BYTES}",
                )
            ]
        )
    faults = graph_faults(wf)
    if faults:
        raise DefinitionError(faults)

    faults = expression_faults(wf)
    if faults:
        raise DefinitionError(faults)
    return wf


def parse_workflow_text(text: str | bytes) -> Workflow:
    """Parse JSON or YAML text (YAML is a superset of JSON) and validate it.

    The text is bounded before any deep work: its size here, its shape (no YAML aliases,
    depth, number of values) by `load_text`."""
    if len(text) > MAX_DEFINITION_BYTES:
        raise DefinitionError([("", f"a definition may be at most {MAX_DEFINITION_BYTES} bytes")])
    return parse_workflow(load_text(text))
