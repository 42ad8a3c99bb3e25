"""`baton run` starts a child that died again, backing off, and gives up on one that cannot
run (issue 14, item 3). The real processes: tests/e2e/test_run_command.py."""

from __future__ import annotations

from services.cli.stack import MAX_QUICK_EXITS, RESTART_MAX_S, STABLE_S, after_exit


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
