"""Instances of a version share one definition text in memory, however many copies of it
the log brought (each decoded event has its own)."""

from __future__ import annotations

from services.domain.protocol.commands import StartInstance
from tests.unit.domain.workflow.test_run_strategies import World


def copy(text: str) -> str:
    return "".join(list(text))  # an equal string that is another object, as a decode makes


def test_live_instances_and_queued_starts_share_their_versions_text() -> None:
    w = World("SEQUENTIAL")
    for iid in ("i1", "i2", "i3"):
        text = copy(w.definition)
        assert text is not w.definition
        w.when(StartInstance(iid, "wf", 1, text, "{}", "test", None, admitted=False))
    w.succeed("i1")  # i2 starts from its queued copy
    version = w.workflows["wf"].definitions[1]
    assert w.instances["i1"].definition is version
    assert w.instances["i2"].definition is version
    [queued] = w.workflow.queue if w.workflow else []
    assert queued.definition is version
