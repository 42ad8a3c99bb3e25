"""Commands on the topic carry JSON the engine decodes: nested deeper than Baton accepts, it
is Rejected (the shard dead-letters it with the reason), never a RecursionError in decide nor
a record that every later reader must decode (issue 14, item 8)."""

from __future__ import annotations

import pytest

from services.domain.decider import decide
from services.domain.kernel.documents import MAX_DEPTH
from services.domain.kernel.errors import Rejected
from services.domain.protocol.commands import PushWorkflow, SendSignal, StartInstance
from services.domain.signal.decide import decide_signal
from services.domain.workflow.decide import decide_workflow
from tests.unit.domain.given import IID, workflow_json


def nested(depth: int) -> str:
    """`depth` objects, one in the other: the innermost is at depth `depth - 1`."""
    return '{"a":' * depth + "1" + "}" * depth


# The payload's own bound (64 KiB) stops deeper ones first: 5,000 levels are 25 KB.
@pytest.mark.parametrize("depth", [MAX_DEPTH + 2, 800, 5_000])
def test_a_signal_payload_nested_too_deep_is_rejected(depth: int) -> None:
    command = SendSignal("s", "r1", "{}", nested(depth), "api:test")
    with pytest.raises(Rejected, match="nested more than 64 levels"):
        decide_signal(None, command, 0)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_start_params_nested_too_deep_are_rejected(depth: int) -> None:
    definition = workflow_json([{"id": "a", "type": "noop"}])
    command = StartInstance(IID, "wf", 1, definition, '{"m":' + nested(depth) + "}", "t")
    with pytest.raises(Rejected, match="nested more than 64 levels"):
        decide(None, command, 0)


def test_a_pushed_definition_nested_too_deep_is_rejected() -> None:
    definition = '{"id":"wf","tags":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(Rejected, match="nested more than 64 levels"):
        decide_workflow(None, PushWorkflow("wf", definition), 0)
