"""The path and query parameters of the API, declared once with the constraints the server
enforces, so that FastAPI refuses a bad value (422, path `path.<name>` or `query.<name>`)
before any query and the OpenAPI document states the same rule.

Every string that reaches PostgreSQL has a pattern without NUL (text cannot hold one) or
other control characters, and a maximum length; every number that reaches an `integer`
column fits in 32 bits.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from services.api.body_rules import INT4_MAX
from services.api.dto import MAX_PAGE
from services.domain.language.fields import ID_PATTERN

MAX_OFFSET = 10_000_000

# `<workflow id>~<32 hex>`, and its children `…~<step id>~<attempt>[~<index>]`: the characters
# of ids and `~` (ROUTE_SEPARATOR), longer than a workflow id.
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_.~-]{1,1024}$"
MAX_INSTANCE_ID_CHARS = 1024
MAX_ID_CHARS = 128
# A registry subject is any printable text (Confluent allows almost anything); Baton's are
# `baton.<topic>-value`.
SUBJECT_PATTERN = r"^[^\x00-\x1f\x7f]{1,512}$"
MAX_SUBJECT_CHARS = 512
# A workflow version: a number, or a name for one.
VERSION_REF_PATTERN = r"^(latest|active|default|[1-9][0-9]{0,8})$"

WorkflowId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
StepId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
InstanceId = Annotated[
    str,
    Path(min_length=1, max_length=MAX_INSTANCE_ID_CHARS, pattern=INSTANCE_ID_PATTERN),
]
VersionRef = Annotated[
    str,
    Path(
        pattern=VERSION_REF_PATTERN,
        max_length=9,
        description="a version number, `latest`, `active`, or `default` (active, else latest)",
    ),
]
Subject = Annotated[str, Path(min_length=1, max_length=MAX_SUBJECT_CHARS, pattern=SUBJECT_PATTERN)]
SubjectVersionRef = Annotated[str, Path(pattern=r"^(latest|-1|[1-9][0-9]{0,8})$", max_length=9)]
SchemaId = Annotated[int, Path(ge=0, le=INT4_MAX)]

# Filters of the list queries.
WorkflowIdFilter = Annotated[
    str | None, Query(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)
]
SignalNameFilter = WorkflowIdFilter
InstanceIdFilter = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_INSTANCE_ID_CHARS,
        pattern=INSTANCE_ID_PATTERN,
        description="only the children of this instance (its"
        " subworkflows' instances and its loops' iterations)",
    ),
]
AfterSeq = Annotated[int, Query(ge=0, le=INT4_MAX)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
