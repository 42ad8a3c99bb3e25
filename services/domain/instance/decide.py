"""decide(state, command, now) -> Decision: every rule of the instance lifecycle.

Pure: time comes in as `now` (UTC microseconds), event ids are derived from the aggregate id
and sequence number. A command that no longer applies (a duplicate, a report for an old
attempt, a stop of a finished instance) decides no events. A command that can never apply
raises `Rejected`, and the engine dead-letters it with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.domain.instance.cancellation import cancel_children
from services.domain.instance.draft import Draft
from services.domain.instance.handlers import (
    breakpoints,
    lifecycle,
    reports,
    step_actions,
    timers,
)
from services.domain.instance.notify import note_status
from services.domain.instance.state import InstanceState
from services.domain.instance.tasks import cancellations, tasks_for
from services.domain.protocol.aggregate import Decision, apply_rule
from services.domain.protocol.commands import (
    InstanceCommand,
    ReportAttemptFailed,
    ReportAttemptSucceeded,
)

# Every command an instance decides, and its rule (each handler module holds its table).
RULES: dict[type, Callable[[Draft, Any], None]] = {
    **lifecycle.RULES,
    **step_actions.RULES,
    **breakpoints.RULES,
    **reports.RULES,
    **timers.RULES,
}

# Fields a report's rule makes storable itself (see handlers/reports.py).
_JUDGED_BY_THEIR_RULE: dict[type, frozenset[str]] = {
    ReportAttemptSucceeded: frozenset({"outputs"}),
    ReportAttemptFailed: frozenset({"message", "output_tail"}),
}


def decide_instance(
    state: InstanceState | None, command: InstanceCommand, now: int, caused_at: int | None = None
) -> Decision[InstanceState]:
    """The instance's rules: the events (folded into the state), the commands they send to
    other aggregates, the tasks for workers and the cancellations workers must hear of."""
    d = Draft(state, command.instance_id, now, caused_at, on_attempt_end=cancel_children)
    apply_rule(RULES, d, command, _JUDGED_BY_THEIR_RULE.get(type(command), frozenset()))
    if not d.events:
        return d.decision()
    note_status(d, state)
    assert d.state is not None
    return Decision(
        d.state, d.events, d.sent, tasks_for(d.state, d.events), cancellations(d.events)
    )
