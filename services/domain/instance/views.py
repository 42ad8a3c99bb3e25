"""What an instance's expressions see at run time: the built-ins of its run, the outputs of the steps upstream. The language evaluates; these views give it the instance's values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from services.domain.instance.state import InstanceState
from services.domain.kernel.statuses import StepStatus
from services.domain.language.evaluation import builtins, context, parsed_outputs


def run_builtins(s: InstanceState) -> dict[str, Any]:
    """The built-ins of the instance's current run (and `iteration`, in an iteration of a loop)."""
    base = builtins(
        workflow_id=s.workflow_id,
        version=s.version,
        time_zone=s.workflow.time_zone,
        instance_id=s.instance_id,
        run=s.run,
        initiator=s.initiator,
        started_at=s.started_at,
        run_started_at=s.run_started_at,
    )
    if s.loop is not None:
        base["iteration"] = parsed_outputs(s.loop)
    return base


def steps_view(s: InstanceState, step_id: str) -> dict[str, Any]:
    """What `steps` holds for a step's params and incoming conditions: the steps they read."""
    return outputs_view(s, s.workflow.dag.steps_read[step_id])


def outputs_view(s: InstanceState, step_ids: Iterable[str]) -> dict[str, Any]:
    """`steps.<id>.status` and `steps.<id>.outputs` of these steps, as they stand."""
    view = {}
    for sid in step_ids:
        st = s.steps[sid]
        outputs = parsed_outputs(st.outputs) if st.outputs else {}
        view[sid] = {"status": st.status.value, "outputs": outputs}
    return view


def scope(s: InstanceState, step_id: str, own_outputs: str | None = None) -> dict[str, Any]:
    """What match values and output params see: the run's params, the built-ins, the
    outputs of the steps upstream, and the step's own (for outputs, as it succeeds)."""
    view = outputs_view(s, s.workflow.dag.ancestors[step_id])
    if own_outputs is not None:
        view[step_id] = {"status": StepStatus.SUCCEEDED.value, "outputs": json.loads(own_outputs)}
    return context(parsed_outputs(s.params), run_builtins(s), view)
