"""The projector's positions in the events topic, kept in PostgreSQL beside the read models.

Written in the same transaction as the rows a batch made (STYLE habit 7), so the stored
position is exactly what the read models hold; Kafka's committed offsets are never used.
"""

from __future__ import annotations

from collections.abc import Mapping

from projections.tables import Conn

_SAVE_OFFSETS = """
INSERT INTO projector_offsets (projector, topic, partition, next_offset)
SELECT $1, $2, p, o FROM unnest($3::int4[], $4::int8[]) AS t(p, o)
ON CONFLICT (projector, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""
_LOAD_OFFSETS = """
SELECT partition, next_offset FROM projector_offsets WHERE projector = $1 AND topic = $2
"""


async def stored_offsets(conn: Conn, projector: str, topic: str) -> dict[int, int]:
    """The next offset to apply, by partition; a partition never stored is absent."""
    rows = await conn.fetch(_LOAD_OFFSETS, projector, topic)
    return {r["partition"]: r["next_offset"] for r in rows}


async def save_offsets(
    conn: Conn, projector: str, topic: str, next_offsets: Mapping[int, int]
) -> None:
    """Store the next offset of each partition given (the caller's transaction decides when)."""
    await conn.execute(
        _SAVE_OFFSETS, projector, topic, list(next_offsets), list(next_offsets.values())
    )
