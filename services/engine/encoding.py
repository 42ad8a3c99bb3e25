"""A shard's outputs as the bytes its transaction writes: bounded in size, commands wrapped
in their envelopes, and a derived command whose decision failed made into a dead letter."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from services.adapters.avro import Codec
from services.adapters.definitions import by_reference
from services.domain.kernel.errors import Rejected
from services.domain.protocol.commands import Command, CommandEnvelope
from services.domain.protocol.events import Event
from services.domain.protocol.routing import command_key
from services.engine.outbox import Outbox

# The shard's own logger: these lines were the shard's before they moved here, and
# operators' filters know them by that name.
log = logging.getLogger("services.engine.shard")

# The largest record the engine writes; above it the command is rejected (dead-lettered)
# instead of making Kafka refuse the whole transaction again and again.
MAX_RECORD_BYTES = 3 * 1024 * 1024


def encode_bounded(encode: Callable[[Any], bytes], value: Any) -> bytes:
    """`encode(value)`; raises Rejected when that is larger than MAX_RECORD_BYTES."""
    data = encode(value)
    if len(data) > MAX_RECORD_BYTES:
        raise Rejected(
            f"{type(value).__name__} would be {len(data)} bytes; at most {MAX_RECORD_BYTES}"
        )
    return data


def encode_events(
    codec: Codec, events: list[Event], logged: set[str]
) -> tuple[list[tuple[Event, bytes]], list[tuple[str, str]]]:
    """Each event with its bytes as the log keeps it (a definition by reference), and the
    definitions they name that are not `logged` in baton.definitions yet: (hash, text).
    Rejected when one is too large."""
    encoded: list[tuple[Event, bytes]] = []
    definitions: list[tuple[str, str]] = []
    for e in events:
        wire, definition = by_reference(e)
        if definition is not None and definition[0] not in logged and definition not in definitions:
            definitions.append(definition)
        encoded.append((e, encode_bounded(codec.encode_event, wire)))
    return encoded, definitions


def envelope(c: Command, now: int, caused_at: int | None) -> CommandEnvelope:
    """A command a decision sends, with a new id."""
    # Issued "when the cause was": latency measured downstream spans the whole chain.
    return CommandEnvelope(uuid.uuid4().hex, caused_at if caused_at is not None else now, c)


def dead_letter_derived(
    codec: Codec,
    partition: int,
    c: Command,
    now: int,
    caused_at: int | None,
    out: Outbox,
    reason: str,
) -> None:
    """Add to `out` the dead letter of `c`, derived on `partition` and failed for `reason`;
    a command not even encodable is only logged."""
    log.warning("p%d: derived %s dead-lettered: %s", partition, type(c).__name__, reason)
    try:
        data = codec.encode_command(envelope(c, now, caused_at))
    except Exception as err:  # not even encodable: the log line above is all there is
        log.error("p%d: derived %r could not be encoded: %s", partition, c, err)
        return
    out.dead_derived.append((command_key(c).encode(), data, f"derived command: {reason}"))
