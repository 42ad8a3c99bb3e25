"""Workflows: push and validate definitions, read versions, start instances of a version."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from services.api import problems
from services.api.common import canonical_json, json_value, page, publish, row_dict
from services.api.deps import Codec, Pool, Producer, Validator
from services.api.dto import (
    DEFAULT_PAGE,
    ActivateBody,
    ActivationAccepted,
    InstanceAccepted,
    InstanceCreate,
    Page,
    ValidationResult,
    WorkflowAccepted,
    WorkflowPublic,
    WorkflowVersionPublic,
    WorkflowVersionSummary,
)
from services.api.inputs import Limit, Offset, VersionRef, WorkflowId
from services.api.problems import Problem
from services.api.validation import DefinitionValidator, ValidationBusy
from services.domain.kernel.errors import DefinitionError, ExpressionError
from services.domain.language.evaluation import builtins, check_overrides, start_params
from services.domain.language.fields import ID_PATTERN, MAX_DEFINITION_BYTES, MAX_STEPS
from services.domain.language.workflow import Workflow, load_workflow
from services.domain.protocol.commands import (
    ActivateWorkflow,
    DeactivateWorkflow,
    PushWorkflow,
    StartInstance,
)
from services.domain.protocol.routing import ROUTE_SEPARATOR

# Instance ids of keyed starts: uuid5(BATON_NS, f"{workflow_id}\0{idempotency_key}"), so the
# same key twice names the same instance and the engine drops the second StartInstance.
# Fixed forever: changing it would let a retried request start a second instance.
BATON_NS = uuid.UUID("6d1c1c2e-5b1a-5f0e-9a57-62a746f6e2e6")

DEFINITION_MEDIA_TYPES = ("application/json", "application/yaml", "text/yaml")
_EXTRA_MEDIA_TYPES = ("application/x-yaml", "text/x-yaml")
# Only when the operator opts in (BATON_API_TEXT_PLAIN_DEFINITIONS): a browser sends a
# text/plain POST cross-site without a preflight, so it is the media type of a forged push.
TEXT_PLAIN = "text/plain"

router = APIRouter(prefix="/workflows", tags=["workflows"])


# What the document can state of a definition; the DSL's own rules (docs/dsl.md) are checked
# by the parser and reported as a 422 with the path of each fault. The size limit is in bytes,
# which a JSON Schema length (in characters) cannot say.
_DEFINITION_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "steps"],
    "properties": {
        "id": {"type": "string", "pattern": ID_PATTERN},
        "steps": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_STEPS,
            "items": {"type": "object"},
        },
    },
}
_DEFINITION_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
_DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A workflow definition as JSON or YAML (see docs/dsl.md), at most"
        f" {MAX_DEFINITION_BYTES:,} bytes.",
        "content": {
            "application/json": {"schema": _DEFINITION_OBJECT},
            "application/yaml": {"schema": _DEFINITION_TEXT},
            "text/yaml": {"schema": _DEFINITION_TEXT},
        },
    }
}


def instance_id_for(workflow_id: str, idempotency_key: str | None) -> str:
    """`<workflow id>~<32 hex>`: routed by the workflow id, so the instance lives on the
    partition of its workflow's run strategy (ROUTE_SEPARATOR)."""
    if idempotency_key is None:
        unique = uuid.uuid4().hex
    else:
        unique = uuid.uuid5(BATON_NS, f"{workflow_id}\0{idempotency_key}").hex
    return f"{workflow_id}{ROUTE_SEPARATOR}{unique}"


async def _read_definition(request: Request, validator: DefinitionValidator) -> Workflow:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    accepted: tuple[str, ...] = DEFINITION_MEDIA_TYPES + _EXTRA_MEDIA_TYPES
    if request.app.state.options.text_plain_definitions:
        accepted += (TEXT_PLAIN,)
    if media_type not in accepted:
        raise Problem(
            415,
            "Unsupported Media Type",
            f"send the definition as one of {', '.join(DEFINITION_MEDIA_TYPES)}; "
            f"got {media_type or 'no content-type'!r}",
            kind="unsupported-media-type",
        )
    # Read at most one byte past the limit: enough for the parser to report the size fault
    # without holding an arbitrarily large body in memory.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_DEFINITION_BYTES:
            break
    try:
        return await validator.parse(bytes(body))
    except DefinitionError as err:
        raise problems.from_definition_error(err) from None
    except ValidationBusy as err:
        raise Problem(
            503, "Service Unavailable", f"{err}; try again", kind="validation-busy"
        ) from None


@router.post(
    "",
    status_code=202,
    openapi_extra=_DEFINITION_BODY,
    # 413: a command Kafka refuses for its size (this body is not JsonBodyGuard's).
    responses=problems.responses(413, 415),
    summary="Push a new version of a workflow",
)
async def push_workflow(
    request: Request,
    producer: Producer,
    codec: Codec,
    validator: Validator,
    activate: Annotated[bool, Query(description="make the new version the active one")] = True,
) -> WorkflowAccepted:
    """Validate the definition and publish `PushWorkflow`. The new version becomes readable
    once the engine has recorded it and the projector has written it."""
    wf = await _read_definition(request, validator)
    command_id = await publish(
        producer,
        codec,
        PushWorkflow(workflow_id=wf.id, definition=wf.to_json(), activate=activate),
    )
    return WorkflowAccepted(workflow_id=wf.id, command_id=command_id)


@router.post(
    "/validate",
    openapi_extra=_DEFINITION_BODY,
    responses=problems.responses(415),
    summary="Validate a definition without pushing it",
)
async def validate_workflow(request: Request, validator: Validator) -> ValidationResult:
    await _read_definition(request, validator)
    return ValidationResult()


@router.get("", summary="List workflows")
async def list_workflows(
    pool: Pool, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> Page[WorkflowPublic]:
    rows = await pool.fetch(
        "SELECT * FROM workflows ORDER BY workflow_id LIMIT $1 OFFSET $2", limit + 1, offset
    )
    return Page[WorkflowPublic].model_validate(
        page([row_dict(r, "tags", "time_triggers", "breakpoints") for r in rows], limit, offset)
    )


async def _workflow_row(pool: Pool, workflow_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM workflows WHERE workflow_id = $1", workflow_id)
    if row is None:
        raise problems.not_found(f"workflow {workflow_id!r}")
    return row_dict(row, "tags", "time_triggers", "breakpoints")


@router.get("/{workflow_id}", responses=problems.responses(404), summary="Get a workflow")
async def get_workflow(pool: Pool, workflow_id: WorkflowId) -> WorkflowPublic:
    return WorkflowPublic.model_validate(await _workflow_row(pool, workflow_id))


@router.get(
    "/{workflow_id}/versions",
    responses=problems.responses(404),
    summary="List the versions of a workflow",
)
async def list_versions(
    pool: Pool, workflow_id: WorkflowId, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> Page[WorkflowVersionSummary]:
    await _workflow_row(pool, workflow_id)
    rows = await pool.fetch(
        "SELECT workflow_id, version, created_at FROM workflow_versions WHERE workflow_id = $1"
        " ORDER BY version DESC LIMIT $2 OFFSET $3",
        workflow_id,
        limit + 1,
        offset,
    )
    return Page[WorkflowVersionSummary].model_validate(page([dict(r) for r in rows], limit, offset))


async def load_version(pool: Pool, workflow_id: str, version: int | str) -> dict[str, Any]:
    """The `workflow_versions` row of `version` (a number, "latest", "active" or "default":
    the active version, else the latest), or 404."""
    if version in ("active", "default"):
        active = await pool.fetchval(
            "SELECT active_version FROM workflows WHERE workflow_id = $1", workflow_id
        )
        if active is not None:
            version = active
        elif version == "active":
            exists = await pool.fetchval(
                "SELECT 1 FROM workflows WHERE workflow_id = $1", workflow_id
            )
            if not exists:
                raise problems.not_found(f"workflow {workflow_id!r}")
            raise problems.not_found(f"an active version of workflow {workflow_id!r}")
        else:
            version = "latest"
    if version == "latest":
        row = await pool.fetchrow(
            "SELECT * FROM workflow_versions WHERE workflow_id = $1 ORDER BY version DESC LIMIT 1",
            workflow_id,
        )
    else:
        row = await pool.fetchrow(
            "SELECT * FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
            workflow_id,
            int(version),
        )
    if row is None:
        exists = await pool.fetchval("SELECT 1 FROM workflows WHERE workflow_id = $1", workflow_id)
        if not exists:
            raise problems.not_found(f"workflow {workflow_id!r}")
        raise problems.not_found(f"version {version} of workflow {workflow_id!r}")
    return row_dict(row, "definition")


@router.get(
    "/{workflow_id}/versions/{version}",
    responses=problems.responses(404, 422),
    summary="Get one version of a workflow, with its definition",
)
async def get_version(
    pool: Pool, workflow_id: WorkflowId, version: VersionRef
) -> WorkflowVersionPublic:
    return WorkflowVersionPublic.model_validate(await load_version(pool, workflow_id, version))


@router.post(
    "/{workflow_id}/instances",
    status_code=202,
    responses=problems.responses(404, 409),
    summary="Start an instance of a workflow version",
)
async def start_instance(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    workflow_id: WorkflowId,
    body: Annotated[InstanceCreate | None, Body()] = None,
) -> InstanceAccepted:
    """Publish `StartInstance` for the version's stored definition. Poll
    `GET /instances/{id}?wait_seconds=5` to read the instance once it is projected."""
    req = body or InstanceCreate()
    row = await load_version(pool, workflow_id, req.version)
    definition, wf = _stored_definition(workflow_id, row)
    instance_id = instance_id_for(workflow_id, req.idempotency_key)
    given, params = _checked_params(wf, req, workflow_id, instance_id, row["version"])
    if req.idempotency_key is not None:
        await _same_request_or_conflict(pool, instance_id, row["version"], given, req)
    command = StartInstance(
        instance_id=instance_id,
        workflow_id=workflow_id,
        version=row["version"],
        definition=definition,
        params=params,
        initiator=req.initiator,
        idempotency_key=req.idempotency_key,
        admitted=False,  # the workflow's run strategy decides when it runs
    )
    # A 503 names the instance it tried: a timed-out start may still happen.
    command_id = await publish(producer, codec, command, {"instance_id": instance_id})
    return InstanceAccepted(
        instance_id=instance_id,
        workflow_id=workflow_id,
        version=row["version"],
        command_id=command_id,
    )


def _stored_definition(workflow_id: str, row: dict[str, Any]) -> tuple[str, Workflow]:
    """The version's definition exactly as stored, re-serialised canonically (jsonb
    re-spaces it), and its model. One that no longer validates is the server's fault."""
    definition = canonical_json(json_value(row["definition"]))
    try:
        return definition, load_workflow(definition)
    except DefinitionError as err:
        raise Problem(
            500,
            "Internal Server Error",
            f"stored version {row['version']} of {workflow_id!r} no longer validates: {err}",
        ) from None


def _checked_params(
    wf: Workflow, req: InstanceCreate, workflow_id: str, instance_id: str, version: int
) -> tuple[dict[str, Any], str]:
    """The overrides the request gives (checked against the definition) and the params as
    the command carries them; a 422 naming `params` for what cannot start."""
    try:
        given = check_overrides(wf, req.params)
        params = canonical_json(req.params)
        # Evaluated here only to refuse what cannot start (the engine evaluates for the record,
        # at its own start time): an override can break an expression that reads it.
        now = time.time_ns() // 1000
        base = builtins(
            workflow_id=workflow_id,
            version=version,
            time_zone=wf.time_zone,
            instance_id=instance_id,
            run=1,
            initiator=req.initiator,
            started_at=now,
            run_started_at=now,
        )
        start_params(wf, req.params, base)
    except DefinitionError as err:
        raise problems.from_definition_error(err, "params") from None
    except ExpressionError as err:
        raise problems.invalid_input([("params", str(err))], "params") from None
    except ValueError as err:  # NaN or infinity: not JSON
        raise problems.invalid_input([("params", str(err))], "params") from None
    return given, params


async def _same_request_or_conflict(
    pool: Pool, instance_id: str, version: int, params: dict[str, Any], req: InstanceCreate
) -> None:
    """A key already used for a different start is an error, not a silent no-op: another
    version, or an override the instance does not have. (A start not yet projected cannot be
    compared; the engine then keeps the first one.)"""
    existing = await pool.fetchrow(
        "SELECT version, params FROM instances WHERE instance_id = $1", instance_id
    )
    if existing is None:
        return
    stored = json_value(existing["params"])
    if existing["version"] != version or any(
        k not in stored or stored[k] != v for k, v in params.items()
    ):
        raise problems.conflict(
            f"idempotency key {req.idempotency_key!r} was used for instance {instance_id} "
            f"with version {existing['version']} and other params; use a new key"
        )


@router.post(
    "/{workflow_id}/actions/activate",
    status_code=202,
    responses=problems.responses(404),
    summary="Make a version the active one",
)
async def activate_workflow(
    pool: Pool,
    producer: Producer,
    codec: Codec,
    workflow_id: WorkflowId,
    body: Annotated[ActivateBody | None, Body()] = None,
) -> ActivationAccepted:
    """`active` and `default` name this version from now on (new starts, triggers)."""
    version = (body or ActivateBody()).version
    await load_version(pool, workflow_id, "latest" if version is None else version)
    command_id = await publish(
        producer, codec, ActivateWorkflow(workflow_id=workflow_id, version=version)
    )
    return ActivationAccepted(workflow_id=workflow_id, action="activate", command_id=command_id)


@router.post(
    "/{workflow_id}/actions/deactivate",
    status_code=202,
    responses=problems.responses(404),
    summary="Leave the workflow without an active version",
)
async def deactivate_workflow(
    pool: Pool, producer: Producer, codec: Codec, workflow_id: WorkflowId
) -> ActivationAccepted:
    """`active` then names nothing (404), and `default` the latest version."""
    await _workflow_row(pool, workflow_id)
    command_id = await publish(producer, codec, DeactivateWorkflow(workflow_id=workflow_id))
    return ActivationAccepted(workflow_id=workflow_id, action="deactivate", command_id=command_id)
