"""The Confluent frame around every message: magic byte 0, the 4-byte big-endian schema id,
then the Avro binary body, so standard Kafka tooling can decode the topics given Baton's
registry endpoints."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from fastavro import schemaless_reader, schemaless_writer

from services.adapters.avro.errors import DecodeError, EncodeError
from services.adapters.avro.records import Record
from services.adapters.avro.schemas import Schema

MAGIC = 0
HEADER_SIZE = 5


@dataclass(frozen=True, slots=True)
class Writer:
    """A schema some writer may have framed a message with: any published version, or today's."""

    subject: str
    schema_id: int
    parsed: Schema


def frame_header(schema_id: int) -> bytes:
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big")


def write_frame(header: bytes, schema: Schema, record: Record, record_name: str) -> bytes:
    """`record` written with `schema` after `header`; EncodeError naming `record_name` when it
    does not fit the schema."""
    buf = io.BytesIO()
    buf.write(header)
    try:
        schemaless_writer(buf, schema, record)
    except Exception as exc:
        raise EncodeError(f"cannot write {record_name}: {exc!r}") from exc
    return buf.getvalue()


def read_frame(
    data: bytes,
    writers: Mapping[int, Writer],
    subject: str,
    reader: Schema,
    *,
    names_only_when_ambiguous: bool = False,
) -> Record:
    """The record of a framed message of `subject`, read with its writer's schema (found by the
    id in the frame) resolved against `reader`. DecodeError, with the reason, for anything but
    exactly one well-formed frame of that subject. A union's record comes as (name, record);
    with `names_only_when_ambiguous`, only in a union of more than one record (an optional
    record is then the record or None)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"truncated frame: {len(data)} bytes, the header alone is {HEADER_SIZE}")
    if data[0] != MAGIC:
        raise DecodeError(f"wrong magic byte {data[0]:#04x}: not Confluent-framed Avro")
    sid = int.from_bytes(data[1:HEADER_SIZE], "big")
    writer = writers.get(sid)
    if writer is None:
        raise DecodeError(f"unknown schema id {sid}")
    if writer.subject != subject:
        raise DecodeError(f"schema id {sid} belongs to {writer.subject}, not {subject}")
    # Today's writer needs no resolution (and fastavro skips it only when given None).
    resolve_to = None if writer.parsed is reader else reader
    fo = io.BytesIO(data)
    fo.seek(HEADER_SIZE)
    try:
        rec = schemaless_reader(
            fo,
            writer.parsed,
            resolve_to,
            return_record_name=True,
            return_record_name_override=names_only_when_ambiguous,
        )
    except Exception as exc:
        # fastavro reports malformed input with many exception types (EOFError, IndexError,
        # UnicodeDecodeError, SchemaResolutionError, OverflowError ...): one reason for all.
        raise DecodeError(
            f"malformed Avro body for schema id {sid} ({writer.subject}): {exc!r}"
        ) from exc
    if fo.tell() != len(data):
        raise DecodeError(
            f"{len(data) - fo.tell()} trailing bytes after the Avro body (schema id {sid})"
        )
    if not isinstance(rec, dict):
        raise DecodeError(f"expected a record, got {type(rec).__name__}")
    return rec
