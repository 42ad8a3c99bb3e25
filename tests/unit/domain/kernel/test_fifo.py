"""The persistent FIFO behaves as a list of unique keys: append last, remove anywhere, first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.domain.kernel.fifo import Fifo

OPS = st.lists(st.tuples(st.sampled_from(["append", "remove"]), st.integers(0, 12)), max_size=80)


@given(OPS)
def test_the_queue_is_a_list_of_unique_keys_in_arrival_order(ops: list[tuple[str, int]]) -> None:
    queue: Fifo[str] = Fifo()
    model: list[str] = []
    for op, n in ops:
        key = f"k{n}"
        if op == "append":
            queue = queue.append(key, key.upper())
            if key not in model:
                model.append(key)
        else:
            queue = queue.remove(key)
            model = [k for k in model if k != key]
        assert list(queue) == [k.upper() for k in model]
        assert len(queue) == len(model) and bool(queue) == bool(model)
        assert queue.first() == (model[0].upper() if model else None)
        assert all(k in queue for k in model) and "absent" not in queue
        # A queue rebuilt from its values (as a snapshot restores it) equals it.
        assert Fifo.of(list(queue), key=str.lower) == queue


def test_an_older_version_is_unchanged_by_later_operations() -> None:
    empty: Fifo[int] = Fifo()
    first = empty.append("a", 1).append("b", 2)
    second = first.remove("a").append("c", 3)
    assert list(first) == [1, 2] and list(second) == [2, 3]
    assert first != second and first == empty.append("a", 1).append("b", 2)
