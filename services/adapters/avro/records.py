"""How the domain's frozen dataclasses map to Avro records and back, computed once per type.

Only the values Avro does not already hold as the domain does are converted: timestamps
(microseconds since the epoch), string enums and tuples (Avro arrays decode as lists).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Any, TypeAlias

from services.adapters.avro.errors import DecodeError, SchemaError
from services.adapters.avro.schemas import Schema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICRO = timedelta(microseconds=1)

Record: TypeAlias = dict[str, Any]


def micros(value: Any) -> int:
    """A timestamp as the domain holds it (microseconds); accepts a datetime too."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MICRO
    if isinstance(value, int):
        return value
    raise TypeError(f"expected a timestamp, got {type(value).__name__}")


def micros_or_none(value: Any) -> int | None:
    return None if value is None else micros(value)


def _is_timestamp(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_is_timestamp(branch) for branch in avro_type)
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-micros"


@dataclass(frozen=True, slots=True)
class RecordMap:
    """How one dataclass maps to and from its Avro record, computed once."""

    cls: type[Any]
    full_name: str
    short_name: str
    fields: tuple[str, ...]
    getter: Callable[[Any], tuple[Any, ...]]
    # Only the fields whose Avro value is not already the domain value: enums, tuples, times.
    decoders: tuple[tuple[str, Callable[[Any], Any]], ...]

    def to_record(self, obj: Any) -> Record:
        return dict(zip(self.fields, self.getter(obj), strict=True))

    def from_record(self, record: Record) -> Any:
        for name, decode in self.decoders:
            record[name] = decode(record[name])
        return self.cls(**record)


def record_map(cls: type[Any], record_schema: Schema) -> RecordMap:
    """The map of `cls` onto `record_schema`; SchemaError unless their fields are the same,
    in the same order."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    avro_fields = {f["name"]: f["type"] for f in record_schema["fields"]}
    if tuple(avro_fields) != names:
        raise SchemaError(
            f"schema {record_schema['name']} has fields {list(avro_fields)} but "
            f"{cls.__name__} has {list(names)}"
        )
    hints = typing.get_type_hints(cls)
    decoders: list[tuple[str, Callable[[Any], Any]]] = []
    for name in names:
        hint = hints[name]
        optional = type(None) in typing.get_args(hint)
        inner = [a for a in typing.get_args(hint) if a is not type(None)] if optional else [hint]
        base = inner[0] if len(inner) == 1 else hint
        if _is_timestamp(avro_fields[name]):
            decoders.append((name, micros_or_none if optional else micros))
        elif isinstance(base, type) and issubclass(base, StrEnum):
            decoders.append((name, base))
        elif typing.get_origin(base) is tuple:
            decoders.append((name, tuple))
    getter: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:
        single = names[0]
        getter = lambda obj: (getattr(obj, single),)  # noqa: E731  (attrgetter of one name is no tuple)
    else:
        getter = attrgetter(*names)
    full_name = record_schema["name"]
    return RecordMap(cls, full_name, full_name.rsplit(".", 1)[-1], names, getter, tuple(decoders))


def payload_maps(
    envelope: Schema, types: Iterable[type[Any]], namespace: str
) -> dict[type[Any], RecordMap]:
    """The map of each payload type of an envelope (events, commands); SchemaError when a type
    has no record in the envelope's payload union, or the union a record without a type."""
    named: dict[str, Schema] = envelope["__named_schemas"]
    maps: dict[type[Any], RecordMap] = {}
    for cls in types:
        full_name = f"{namespace}.{cls.__name__}"
        record_schema = named.get(full_name)
        if record_schema is None:
            raise SchemaError(f"{envelope['name']} has no payload record {full_name}")
        maps[cls] = record_map(cls, record_schema)
    payload_type = next(f["type"] for f in envelope["fields"] if f["name"] == "payload")
    union = [b if isinstance(b, str) else b["name"] for b in payload_type]
    missing = sorted(set(union) - {m.full_name for m in maps.values()})
    if missing:
        raise SchemaError(
            f"{envelope['name']} payload has records without a domain type: {missing}"
        )
    return maps


def decode_payload(rec: Record, by_name: dict[str, RecordMap]) -> Any:
    """The domain payload of a decoded envelope; DecodeError when its union branch is unknown
    or disagrees with the envelope's `type`."""
    branch = rec["payload"]
    if not isinstance(branch, tuple):
        raise DecodeError("payload is not a named record")
    name, body = branch
    m = by_name.get(name)
    if m is None:
        raise DecodeError(f"unknown payload record {name}")
    if rec["type"] != m.short_name:
        raise DecodeError(f"envelope type {rec['type']!r} does not match payload record {name}")
    return m.from_record(body)
