"""`baton run` starts a child that died again, backing off, and gives up on one that cannot
run (issue 14, item 3). The real processes: tests/e2e/test_run_command.py."""

from __future__ import annotations

from services.cli.stack import (
    MAX_QUICK_EXITS,
    RESTART_MAX_S,
    STABLE_S,
    HangWatch,
    after_exit,
)


def test_quick_exits_back_off_then_give_up() -> None:
    quick, delays = 0, []
    for _ in range(MAX_QUICK_EXITS):
        quick, delay = after_exit(quick, ran_s=0.5)
        assert delay is not None
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16]
    assert all(d <= RESTART_MAX_S for d in delays)
    assert after_exit(quick, ran_s=0.5) == (MAX_QUICK_EXITS + 1, None)


def test_a_child_that_ran_a_while_is_started_again_at_once_and_counted_afresh() -> None:
    assert after_exit(MAX_QUICK_EXITS, ran_s=STABLE_S) == (1, 1.0)
    assert after_exit(0, ran_s=3_600) == (1, 1.0)


def test_a_process_silent_for_the_hang_time_is_hung() -> None:
    watch = HangWatch(hang_s=30)
    assert not watch.observe(7, answered=False, now=0)
    assert not watch.observe(7, answered=False, now=29)
    assert watch.observe(7, answered=False, now=30)


def test_an_answer_or_a_new_process_starts_the_count_again() -> None:
    watch = HangWatch(hang_s=30)
    watch.observe(7, answered=False, now=0)
    assert not watch.observe(7, answered=True, now=20)
    assert not watch.observe(7, answered=False, now=45)  # silent since 45 only
    assert not watch.observe(8, answered=False, now=60)  # a new pid: its start-up is silent
    assert not watch.observe(8, answered=False, now=89)
    assert watch.observe(8, answered=False, now=90)
