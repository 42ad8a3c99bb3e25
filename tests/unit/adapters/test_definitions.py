"""Definitions by reference: an InstanceStarted goes on the log naming its definition by hash,
and reads back whole; hostile records on baton.definitions are never taken for a text."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

from services.adapters.avro import Codec
from services.adapters.definitions import (
    MAX_DEFINITION_BYTES,
    DefinitionReader,
    by_reference,
    definition_hash,
    names_its_definition,
)
from services.domain.decider import decide
from services.domain.language.parse import parse_workflow
from services.domain.protocol.commands import StartInstance
from services.domain.protocol.events import Event, InstanceStarted

CODEC = Codec()
TEXT = parse_workflow({"id": "wf", "steps": [{"id": "a", "type": "noop"}]}).to_json()


def decided() -> list[Event]:
    return decide(None, StartInstance("wf~1", "wf", 1, TEXT, "{}", "t", None), 1).events


def started() -> Event:
    [event] = [e for e in decided() if isinstance(e.payload, InstanceStarted)]
    return event


def test_an_instance_start_goes_on_the_log_naming_its_definition() -> None:
    event = started()
    wire, definition = by_reference(event)
    assert definition == (definition_hash(TEXT), TEXT)
    assert isinstance(wire.payload, InstanceStarted)
    assert wire.payload.definition == "" and wire.payload.definition_hash == definition[0]
    read = CODEC.decode_event(CODEC.encode_event(wire))
    assert names_its_definition(read) and not names_its_definition(event)
    # Resolved from what the reader holds, the event is the one the decider made (plus the
    # hash it is known by).
    reader = DefinitionReader("unused:0")
    reader.known[definition[0]] = definition[1]
    resolved = asyncio.run(reader.resolve(read))
    payload = event.payload
    assert isinstance(payload, InstanceStarted)
    assert resolved == dataclasses.replace(
        event, payload=dataclasses.replace(payload, definition_hash=definition[0])
    )
    assert len(CODEC.encode_event(wire)) < len(CODEC.encode_event(event)) - len(TEXT) + 100


def test_other_events_and_old_embedding_starts_are_kept_as_they_are() -> None:
    others = [e for e in decided() if not isinstance(e.payload, InstanceStarted)]
    assert others and all(by_reference(e) == (e, None) for e in others)
    event = started()
    embedded = CODEC.decode_event(CODEC.encode_event(event))  # as events before this were
    assert not names_its_definition(embedded)
    assert asyncio.run(DefinitionReader("unused:0").resolve(embedded)) == embedded


def test_only_a_value_that_hashes_to_its_key_is_taken() -> None:
    reader = DefinitionReader("unused:0")
    digest = definition_hash(TEXT)
    reader._take(digest.encode(), b'{"id":"evil"}', 0)  # the wrong text under the key
    reader._take(None, TEXT.encode(), 1)
    reader._take(digest.encode(), b"\xff\xfe", 2)
    huge = b'"' + b"x" * MAX_DEFINITION_BYTES + b'"'  # hashes to its key, but is no definition
    reader._take(hashlib.sha256(huge).hexdigest().encode(), huge, 4)
    assert reader.known == {}
    reader._take(digest.encode(), TEXT.encode(), 3)
    assert reader.known == {digest: TEXT}
