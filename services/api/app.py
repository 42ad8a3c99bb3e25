"""The FastAPI application, built from its dependencies (no module-level app)."""

from __future__ import annotations

from fastapi import FastAPI

from services.api import openapi, problems
from services.api.common import OrjsonResponse
from services.api.deps import ApiDeps
from services.api.routes import breakpoints, health, instances, registry, signals, workflows

API_PREFIX = "/api/v1"


def create_app(deps: ApiDeps) -> FastAPI:
    """The API over `deps`; the caller starts the pool and producer before serving and closes
    them afterwards."""
    app = FastAPI(
        title="Baton",
        version="1",
        summary="Event-sourced workflow orchestrator: query and command API",
        default_response_class=OrjsonResponse,
        openapi_url="/openapi.json",
    )
    app.state.deps = deps
    problems.install(app)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(breakpoints.router, prefix=API_PREFIX)
    app.include_router(instances.router, prefix=API_PREFIX)
    app.include_router(signals.router, prefix=API_PREFIX)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(registry.router, prefix=API_PREFIX)
    # Unversioned: probes expect /health, and a registry URL is conventionally short.
    app.include_router(health.router)
    app.include_router(registry.router)
    openapi.install(app)
    return app
