"""Schema registry, read side, in the Confluent Schema Registry's shapes.

Point a Confluent deserializer at `http://<api>/registry` to decode Baton's topics with
standard tooling. Errors are problem+json that also carry Confluent's `error_code` and
`message` members, so Confluent clients report them sensibly.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.adapters import schema_registry
from services.api import problems
from services.api.deps import Pool
from services.api.dto import SubjectVersionPublic
from services.api.inputs import SchemaId, Subject, SubjectVersionRef
from services.api.problems import Problem

router = APIRouter(prefix="/registry", tags=["schema registry"])

# Confluent's error codes: 40401 subject not found, 40402 version not found, 40403 schema
# not found.
_SUBJECT_NOT_FOUND = 40401
_VERSION_NOT_FOUND = 40402
_SCHEMA_NOT_FOUND = 40403


def _not_found(detail: str, code: int) -> Problem:
    return Problem(
        404,
        "Not Found",
        detail,
        kind="not-found",
        extra={"error_code": code, "message": detail},
    )


@router.get("/subjects", summary="Every subject")
async def list_subjects(pool: Pool) -> list[str]:
    return list(await schema_registry.list_subjects(pool))


async def _versions(pool: Pool, subject: str) -> list[int]:
    versions = list(await schema_registry.subject_versions(pool, subject))
    if not versions:
        raise _not_found(f"subject {subject!r} not found", _SUBJECT_NOT_FOUND)
    return versions


@router.get(
    "/subjects/{subject}/versions",
    responses=problems.responses(404),
    summary="The version numbers of a subject",
)
async def list_subject_versions(pool: Pool, subject: Subject) -> list[int]:
    return await _versions(pool, subject)


@router.get(
    "/subjects/{subject}/versions/{version}",
    responses=problems.responses(404),
    summary="One version of a subject: {subject, version, id, schema}",
)
async def get_subject_version(
    pool: Pool, subject: Subject, version: SubjectVersionRef
) -> SubjectVersionPublic:
    number = max(await _versions(pool, subject)) if version in ("latest", "-1") else int(version)
    found = await schema_registry.subject_version(pool, subject, number)
    if found is None:
        raise _not_found(f"version {version} of subject {subject!r} not found", _VERSION_NOT_FOUND)
    return SubjectVersionPublic.model_validate(found)


@router.get(
    "/schemas/ids/{schema_id}",
    responses=problems.responses(404),
    summary="A schema by its global id: {schema}",
)
async def get_schema(pool: Pool, schema_id: SchemaId) -> dict[str, str]:
    schema = await schema_registry.schema_by_id(pool, schema_id)
    if schema is None:
        raise _not_found(f"schema {schema_id} not found", _SCHEMA_NOT_FOUND)
    return {"schema": schema}
