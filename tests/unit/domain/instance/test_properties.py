"""Properties of the fold and the decider over random command sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.decider import decide
from services.domain.instance.evolve import fold
from services.domain.kernel.errors import Rejected
from services.domain.kernel.statuses import FailureKind, InstanceStatus, RestartMode
from services.domain.protocol.commands import (
    Command,
    FireTimers,
    KillInstance,
    PauseInstance,
    ReportAttemptFailed,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    SkipStep,
    StopInstance,
    StopStep,
)
from services.domain.protocol.events import Event
from tests.unit.domain.given import IID, S, diamond, start

FIXED = {"type": "fixed", "user_seconds": 1, "platform_seconds": 1, "timeout_seconds": 1}
DEFINITION = diamond(
    {"timeout": "1h"},
    timeout="10s",
    retry_policy={"user_limit": 2, "platform_limit": 1, "backoff": FIXED},
)

steps = st.sampled_from(["a", "b", "c", "d", "zz"])
known_steps = st.sampled_from(["a", "b", "c", "d"])
attempts = st.integers(min_value=1, max_value=4)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(ReportAttemptStarted, st.just(IID), steps, attempts, st.just("w")),
    st.builds(ReportAttemptSucceeded, st.just(IID), steps, attempts, st.just("{}")),
    st.builds(
        ReportAttemptFailed,
        st.just(IID),
        steps,
        attempts,
        st.sampled_from(FailureKind),
        st.just("x"),
    ),
    st.builds(FireTimers, st.just(IID)),
    st.builds(StopInstance, st.just(IID)),
    st.builds(KillInstance, st.just(IID)),
    st.builds(RestartInstance, st.just(IID)),
    st.builds(PauseInstance, st.just(IID)),
    st.builds(ResumeInstance, st.just(IID)),
    st.builds(SkipStep, st.just(IID), known_steps),
    st.builds(StopStep, st.just(IID), known_steps),
    st.builds(RestartStep, st.just(IID), known_steps),
    st.builds(
        RestartInstance,
        st.just(IID),
        st.just(RestartMode.FROM_STEP),
        st.none(),
        st.just("{}"),
        known_steps,
    ),
)


def run(cmds: list[Command], gaps: list[int]) -> list[Event]:
    events = decide(None, start(DEFINITION), 0).events
    state = fold(events)
    now = 0
    for cmd, gap in zip(cmds, gaps, strict=False):
        now += gap
        try:
            new = decide(state, cmd, now).events
        except Rejected:
            continue  # a command that can never apply (a restart from a blocked step)
        state = fold(new, state)
        events += new
    return events


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=40), st.lists(st.integers(0, 20 * S), min_size=40, max_size=40))
def test_fold_of_prefix_then_rest_equals_fold_of_all(cmds: list[Command], gaps: list[int]) -> None:
    events = run(cmds, gaps)
    whole = fold(events)
    for cut in range(len(events) + 1):
        assert fold(events[cut:], fold(events[:cut])) == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=40), st.lists(st.integers(0, 20 * S), min_size=40, max_size=40))
def test_sequence_numbers_are_gapless_and_terminal_is_final(
    cmds: list[Command], gaps: list[int]
) -> None:
    events = run(cmds, gaps)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)
    state = fold(events)
    assert state is not None
    if state.status.is_terminal:
        assert not any(s.status.is_active for s in state.steps.values())
    else:
        assert state.status.is_live
        if state.status is InstanceStatus.IN_PROGRESS:
            # A live run always has something in flight or due: it never stalls.
            assert any(s.status.is_active for s in state.steps.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=40), st.lists(st.integers(0, 20 * S), min_size=40, max_size=40))
def test_decide_is_deterministic(cmds: list[Command], gaps: list[int]) -> None:
    assert run(cmds, gaps) == run(cmds, gaps)


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=40), st.lists(st.integers(0, 20 * S), min_size=40, max_size=40))
def test_no_step_has_two_successful_attempts_in_one_run(
    cmds: list[Command], gaps: list[int]
) -> None:
    seen: set[tuple[int, str]] = set()
    run_no = 1
    for e in run(cmds, gaps):
        name = e.type
        if name == "InstanceRestarted":
            run_no = e.payload.run  # type: ignore[union-attr]
            seen = {k for k in seen if k[0] != run_no}
        if name == "StepAttemptSucceeded":
            key = (run_no, e.payload.step_id)  # type: ignore[union-attr]
            assert key not in seen
            seen.add(key)
