"""What an instance tells other aggregates when its status changes: its workflow's run
strategy (it ended, or runs again), or, for a child, its parent's step (it ended, with its
outputs and why)."""

from __future__ import annotations

import json

from services.domain.instance.draft import Draft
from services.domain.instance.state import InstanceState
from services.domain.kernel.documents import dumps
from services.domain.language.evaluation import parsed_outputs
from services.domain.protocol.commands import NoteInstanceStatus, ReportChildEnded
from services.domain.protocol.events import Event, InstanceFailed, InstanceStopped


def note_status(d: Draft, before: InstanceState | None) -> None:
    """An instance that ends, or runs again after a restart, tells its workflow's run
    strategy (which ignores instances it did not admit); a child tells its parent's step."""
    after = d.state
    if after is None or (before is not None and before.status is after.status):
        return
    ended = after.status.is_terminal and (before is None or not before.status.is_terminal)
    rerun = after.status.is_live and before is not None and before.status.is_terminal
    if after.parent_instance_id is not None and after.parent_step_id is not None:
        if ended:
            d.send(
                ReportChildEnded(
                    instance_id=after.parent_instance_id,
                    step_id=after.parent_step_id,
                    attempt=after.parent_attempt,
                    child_id=after.instance_id,
                    status=after.status,
                    outputs=child_outputs(after),
                    reason=end_reason(d.events),
                    iteration=None if after.loop is None else parsed_outputs(after.loop)["index"],
                )
            )
    elif ended or rerun:
        d.send(NoteInstanceStatus(after.workflow_id, after.instance_id, after.status))


# A child's outputs travel to its parent in one command: larger ones are left out, said so.
MAX_CHILD_OUTPUTS_BYTES = 256 * 1024


def child_outputs(s: InstanceState) -> str:
    """Every step's outputs, by step id (the steps that produced some)."""
    outputs = {
        sid: json.loads(st.outputs) for sid, st in s.steps.items() if st.outputs not in (None, "{}")
    }
    text = dumps(outputs)
    if len(text) > MAX_CHILD_OUTPUTS_BYTES:
        return dumps({"truncated": f"the outputs were {len(text)} bytes"})
    return text


def end_reason(events: list[Event]) -> str:
    for e in reversed(events):
        reason = getattr(e.payload, "reason", None)
        if isinstance(e.payload, InstanceFailed | InstanceStopped) and reason:
            return str(reason)
    return ""
