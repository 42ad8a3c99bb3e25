"""Finished aggregates out of memory: the archive.

An aggregate its type calls `evictable` (an instance that is terminal, with no timer and no
attempt on a worker: only a restart can change it) leaves the shard's memory at the next
snapshot flush. Its final state goes to the compacted topic `baton.archive` (partition p, key
`<aggregate>:<key>`), and its snapshot record gets a tombstone, both inside the shard's
transaction, so the archive, the snapshot and the events they cover commit or abort together.

What memory keeps of it is 16 bytes: a 64-bit hash of its key and the archive offset of its
record (`ArchiveIndex`), itself written to the snapshot partition as append-only segments,
so a new owner restores the index with the snapshot, without reading the archive.

Anything that addresses an archived aggregate — a duplicate start, a restart, a late report,
any command — loads its record back before it is decided (`ArchiveReader`), so it is decided
on exactly the state a fold of the whole log gives, as if it had never left. The hash is only
a filter: a record whose key is not the one asked for (a collision, or an older record of a
key archived again since) is skipped, and the newest matching record wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np

# Entries added since the last merge are kept in a dict, then merged into the sorted arrays
# (numpy: a merge of a million entries is one sort of 16 MB, tens of ms; a pure-Python
# sorted list would hold ~100 bytes an entry instead of 16).
MERGE_EVERY = 16_384
# An index segment holds at most this many entries (16 bytes each: one record ≤ 1 MiB).
SEGMENT_ENTRIES = 65_536
_ENTRY = np.dtype([("hash", "<u8"), ("offset", "<i8")])


def key_hash(key: bytes) -> int:
    """A stable 64-bit hash of an archived aggregate's key (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


class ArchiveIndex:
    """Which keys are archived, and where: hash -> archive offsets (a hash may have several:
    a collision, or a key archived more than once). 16 bytes an entry."""

    def __init__(self) -> None:
        self._hashes = np.empty(0, dtype="<u8")
        self._offsets = np.empty(0, dtype="<i8")
        self._recent: dict[int, list[int]] = {}
        self._recent_count = 0

    def __len__(self) -> int:
        return len(self._hashes) + self._recent_count

    def add(self, key: bytes, offset: int) -> None:
        self._recent.setdefault(key_hash(key), []).append(offset)
        self._recent_count += 1
        if self._recent_count >= MERGE_EVERY:
            self._merge()

    def add_entries(self, entries: np.ndarray) -> None:
        """Entries as a segment holds them (see `segment`), merged at once."""
        self._merge(entries)

    def offsets(self, key: bytes) -> list[int]:
        """The archive offsets of records that may be `key`'s, newest first."""
        h = key_hash(key)
        # As numpy's own type: a Python int above 2**63 would be compared as a float.
        needle = np.uint64(h)
        lo = int(np.searchsorted(self._hashes, needle, side="left"))
        hi = int(np.searchsorted(self._hashes, needle, side="right"))
        found = [int(o) for o in self._offsets[lo:hi]]
        found.extend(self._recent.get(h, ()))
        return sorted(found, reverse=True)

    def __contains__(self, key: bytes) -> bool:
        h = key_hash(key)
        if h in self._recent:
            return True
        i = int(np.searchsorted(self._hashes, np.uint64(h)))
        return i < len(self._hashes) and int(self._hashes[i]) == h

    def _merge(self, more: np.ndarray | None = None) -> None:
        parts_h, parts_o = [self._hashes], [self._offsets]
        if self._recent:
            pairs = [(h, o) for h, offs in self._recent.items() for o in offs]
            parts_h.append(np.fromiter((h for h, _ in pairs), dtype="<u8", count=len(pairs)))
            parts_o.append(np.fromiter((o for _, o in pairs), dtype="<i8", count=len(pairs)))
        if more is not None and len(more):
            parts_h.append(more["hash"])
            parts_o.append(more["offset"])
        hashes, offsets = np.concatenate(parts_h), np.concatenate(parts_o)
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._offsets = hashes[order], offsets[order]
        self._recent, self._recent_count = {}, 0


def segment(entries: Iterable[tuple[bytes, int]]) -> bytes:
    """Index entries (key, archive offset) as a segment's bytes: little-endian (hash, offset)
    pairs, 16 bytes each."""
    pairs = [(key_hash(k), o) for k, o in entries]
    return np.array(pairs, dtype=_ENTRY).tobytes()


def read_segment(data: bytes) -> np.ndarray:
    """A segment's entries; ValueError when `data` is not a whole number of entries."""
    if len(data) % _ENTRY.itemsize:
        raise ValueError(f"an index segment of {len(data)} bytes")
    return np.frombuffer(data, dtype=_ENTRY)


def chunks(entries: list[tuple[bytes, int]]) -> Iterator[list[tuple[bytes, int]]]:
    for i in range(0, len(entries), SEGMENT_ENTRIES):
        yield entries[i : i + SEGMENT_ENTRIES]
