"""The API's dependencies, built once by the composition root and reached by routes through
`Annotated` aliases (`pool: Pool`, `producer: Producer`, `codec: Codec`, `cluster: Cluster`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import Depends, Request

from services.adapters import avro
from services.adapters.cluster import ClusterProbe
from services.api.publishing import Publisher, PublishGate
from services.api.validation import DefinitionValidator


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """Owned by the caller of `create_app`: it starts them before serving and closes them after."""

    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    codec: avro.Codec
    cluster: ClusterProbe  # read-only questions to Kafka, for /health
    validator: DefinitionValidator = field(default_factory=DefinitionValidator)
    # What the API has seen of Kafka taking its commands (services/api/publishing.py).
    gate: PublishGate = field(default_factory=PublishGate)


def get_deps(request: Request) -> ApiDeps:
    deps = request.app.state.deps
    assert isinstance(deps, ApiDeps)
    return deps


def get_pool(request: Request) -> asyncpg.Pool:
    return get_deps(request).pool


def get_producer(request: Request) -> Publisher:
    deps = get_deps(request)
    return Publisher(deps.producer, deps.gate)


def get_codec(request: Request) -> avro.Codec:
    return get_deps(request).codec


def get_validator(request: Request) -> DefinitionValidator:
    return get_deps(request).validator


def get_cluster(request: Request) -> ClusterProbe:
    return get_deps(request).cluster


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
Producer = Annotated[Publisher, Depends(get_producer)]
Codec = Annotated[avro.Codec, Depends(get_codec)]
Validator = Annotated[DefinitionValidator, Depends(get_validator)]
Cluster = Annotated[ClusterProbe, Depends(get_cluster)]
