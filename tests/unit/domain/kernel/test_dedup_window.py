"""The dedup window: a key is remembered for at least its span unless max_keys newer keys came
first, and the window never holds more than twice max_keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.domain.kernel.window import DedupWindow, WindowBound

HOUR = 3600 * 1_000_000
BOUND = WindowBound(span_us=24 * HOUR, max_keys=3)


def test_a_key_is_found_until_a_span_after_it_was_added() -> None:
    w: DedupWindow[int] = DedupWindow()
    t = 1000 * HOUR
    w = w.add("a", 1, t, BOUND)  # the first generation begins
    w = w.add("b", 2, t + 23 * HOUR, BOUND)  # within its span
    w = w.add("c", 3, t + 25 * HOUR, BOUND)  # rotates: a and b move to the previous generation
    assert w.get("a") == 1 and w.get("b") == 2 and "c" in w
    w = w.add("d", 4, t + 50 * HOUR, BOUND)  # rotates again: a and b are forgotten
    assert "a" not in w and w.get("a") is None and "b" not in w
    assert w.get("c") == 3 and w.get("d") == 4


def test_max_keys_newer_keys_forget_a_key_sooner() -> None:
    w: DedupWindow[int] = DedupWindow()
    for i in range(7):  # all within one hour
        w = w.add(f"k{i}", i, HOUR + i, BOUND)
    assert "k0" not in w and "k2" not in w  # the first generation (k0..k2) is gone
    assert all(f"k{i}" in w for i in range(3, 7))


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 6 * HOUR)), max_size=200))
def test_the_window_is_bounded_and_keeps_what_it_promises(adds: list[tuple[int, int]]) -> None:
    bound = WindowBound(span_us=HOUR, max_keys=5)
    w: DedupWindow[int] = DedupWindow()
    at = 0
    history: list[tuple[str, int]] = []
    for key, step in adds:
        at += step
        w = w.add(str(key), at, at, bound)
        history.append((str(key), at))
        assert len(w.current) <= bound.max_keys and len(w.previous) <= bound.max_keys
        # Every key added within the span, and among the last max_keys adds, is found.
        for k, when in history[-bound.max_keys :]:
            if at - when < bound.span_us:
                assert k in w
