"""Small pieces every route module shares: the orjson response, JSON columns, paging, publishing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

import asyncpg
import orjson
from aiokafka.errors import MessageSizeTooLargeError
from fastapi.responses import JSONResponse

from services.adapters import avro
from services.adapters.publish import send_command
from services.api.problems import Problem
from services.api.publishing import Publisher
from services.domain.protocol.commands import Command

T = TypeVar("T")


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (datetimes as RFC 3339, UTC offsets kept)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            # orjson refuses integers past 64 bits, which a stored JSON value (params, a
            # payload: jsonb numbers are exact) may hold; the standard library renders them.
            # Anything else it refuses the standard library refuses too, and that is a 500.
            text = json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            return text.encode()


def json_value(value: Any) -> Any:
    """A json/jsonb column: asyncpg hands back text unless a codec is set on the pool."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def row_dict(row: asyncpg.Record, *json_columns: str) -> dict[str, Any]:
    out = dict(row)
    for column in json_columns:
        out[column] = json_value(out[column])
    return out


def canonical_json(value: Any) -> str:
    """The JSON text commands carry: sorted keys, no spaces (as the domain writes it)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def page(items: Sequence[T], limit: int, offset: int) -> dict[str, Any]:
    """A `Page` body. `items` was fetched with `limit + 1` rows: a next page exists iff one
    is left over."""
    return {
        "items": list(items[:limit]),
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(items) > limit else None,
    }


async def publish(
    producer: Publisher,
    codec: avro.Codec,
    command: Command,
    extra: dict[str, Any] | None = None,
) -> str:
    """Send one command and wait for the broker's ack, within a bound; its command id, or 503
    with Retry-After (services/api/publishing.py: `extra` goes into its body), or 413 when
    Kafka refuses it for its size (no retry helps, so it is not "unavailable")."""
    try:
        envelope, _ = await producer.gate.send(
            send_command(producer.producer, codec, command), extra
        )
    except MessageSizeTooLargeError as err:
        raise Problem(
            413,
            "Content Too Large",
            "the command is larger than Kafka accepts; send less (smaller params or payload)",
            kind="too-large",
        ) from err
    return envelope.command_id
