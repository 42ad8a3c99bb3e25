"""The archive index: which keys left memory and where their records are. It may answer a key
that was never archived (a collision: the read checks the key) but never miss one, and the
newest offset of a key comes first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.engine import archive
from services.engine.archive import ArchiveIndex, key_hash, read_segment, segment

keys = st.binary(min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(keys, st.integers(0, 2**40)), max_size=300), st.integers(1, 64))
def test_every_added_key_is_found_with_all_its_offsets_newest_first(
    entries: list[tuple[bytes, int]], merge_every: int
) -> None:
    archive.MERGE_EVERY, saved = merge_every, archive.MERGE_EVERY
    try:
        index = ArchiveIndex()
        for key, offset in entries:
            index.add(key, offset)
    finally:
        archive.MERGE_EVERY = saved
    assert len(index) == len(entries)
    for key in {k for k, _ in entries}:
        assert key in index
        expected = sorted((o for k, o in entries if key_hash(k) == key_hash(key)), reverse=True)
        assert index.offsets(key) == expected


def test_a_key_never_added_is_absent() -> None:
    index = ArchiveIndex()
    for n in range(1000):
        index.add(f"instance:{n}".encode(), n)
    assert b"instance:1000" not in index
    assert index.offsets(b"instance:1000") == []


def test_hashes_above_two_to_the_63_are_found_once_merged() -> None:
    # numpy compares a Python int above 2**63 with uint64 as a float: the index must not.
    big = [k for k in (f"k{n}".encode() for n in range(200)) if key_hash(k) >= 2**63][:50]
    index = ArchiveIndex()
    index.add_entries(read_segment(segment((k, i) for i, k in enumerate(big))))
    for i, key in enumerate(big):
        assert index.offsets(key) == [i]


@given(st.lists(st.tuples(keys, st.integers(0, 2**62)), max_size=100))
def test_a_segment_restores_the_entries_it_was_written_from(
    entries: list[tuple[bytes, int]],
) -> None:
    written = ArchiveIndex()
    for key, offset in entries:
        written.add(key, offset)
    restored = ArchiveIndex()
    restored.add_entries(read_segment(segment(entries)))
    for key, _ in entries:
        assert restored.offsets(key) == written.offsets(key)


def test_a_torn_segment_is_refused() -> None:
    data = segment([(b"a", 1), (b"b", 2)])
    with pytest.raises(ValueError, match="index segment"):
        read_segment(data[:-3])
