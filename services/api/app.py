"""The FastAPI application, built from its dependencies (no module-level app)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from services.adapters.settings import Settings
from services.api import openapi, problems
from services.api.bodies import JsonBodyGuard
from services.api.common import OrjsonResponse
from services.api.deps import ApiDeps
from services.api.load import MAX_REQUESTS, Load, RequestLimit
from services.api.origins import (
    HostGuard,
    OriginGuard,
    ProblemCORSMiddleware,
    own_hosts,
    own_origins,
)
from services.api.routes import breakpoints, health, instances, registry, signals, workflows

API_PREFIX = "/api/v1"
# Definitions are read, bounded and validated by their routes, off the event loop
# (routes/workflows.py), not by JsonBodyGuard.
DEFINITION_PATHS = frozenset({f"{API_PREFIX}/workflows", f"{API_PREFIX}/workflows/validate"})


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """What the operator chose for the API (from `Settings`, in the composition root).

    The defaults are closed: no web page but the API's own (`own_origins`) may write, no
    CORS, no text/plain definitions. `from_settings` also limits the Host names to those of
    the address the API listens on (none when it listens on every address)."""

    own_origins: tuple[str, ...] = ()
    # The Host names requests may carry (HostGuard); empty: any.
    own_hosts: tuple[str, ...] = ()
    # Web origins whose pages may write, and read through CORS.
    allowed_origins: tuple[str, ...] = ()
    text_plain_definitions: bool = False
    # Requests served at once; beyond, 503 `overloaded` with Retry-After (load.py).
    max_requests: int = MAX_REQUESTS

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiOptions:
        return cls(
            own_origins=own_origins(settings.api_host, settings.api_port),
            own_hosts=own_hosts(settings.api_host),
            allowed_origins=settings.api_allowed_origins,
            text_plain_definitions=settings.api_text_plain_definitions,
        )


def create_app(deps: ApiDeps, options: ApiOptions | None = None) -> FastAPI:
    """The API over `deps`; the caller starts the pool and producer before serving and closes
    them afterwards."""
    options = options or ApiOptions()
    app = FastAPI(
        title="Baton",
        version="1",
        summary="Event-sourced workflow orchestrator: query and command API",
        default_response_class=OrjsonResponse,
        openapi_url="/openapi.json",
    )
    app.state.deps = deps
    app.state.options = options
    problems.install(app)
    # Added last runs first: the Host is checked, CORS answers a preflight, the origin guard
    # refuses foreign writes, then JSON bodies are bounded.
    app.add_middleware(JsonBodyGuard, skip=DEFINITION_PATHS)
    app.add_middleware(OriginGuard, allowed=options.own_origins + options.allowed_origins)
    if options.allowed_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=list(options.allowed_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["content-type", "authorization"],
        )
    app.add_middleware(HostGuard, hosts=options.own_hosts)
    # Outermost: a request beyond the bound costs nothing but its answer.
    app.state.load = Load(max_requests=options.max_requests)
    app.add_middleware(RequestLimit, load=app.state.load)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(breakpoints.router, prefix=API_PREFIX)
    app.include_router(instances.router, prefix=API_PREFIX)
    app.include_router(signals.router, prefix=API_PREFIX)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(registry.router, prefix=API_PREFIX)
    # Unversioned: probes expect /health, and a registry URL is conventionally short.
    app.include_router(health.router)
    app.include_router(registry.router)
    openapi.install(app, own_body_paths=DEFINITION_PATHS)
    return app
