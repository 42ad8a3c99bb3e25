"""What the Avro codec raises: one class per side of the wire, and one for its own files."""

from __future__ import annotations

from services.adapters.errors import AdapterError


class DecodeError(AdapterError, ValueError):
    """The bytes are not a message this codec can read; the reason says why."""


class EncodeError(AdapterError, ValueError):
    """The value cannot be written with the current schemas (a type without a schema, ...)."""


class SchemaError(AdapterError, RuntimeError):
    """The schema files are inconsistent with each other or with the domain types."""
