"""Which origins and Host names the API calls its own (services/api/origins.py), and how a
refused CORS preflight is answered."""

from __future__ import annotations

import httpx
import pytest

from services.api.app import ApiOptions
from services.api.origins import host_name, normalise_origin, own_hosts, own_origins
from services.api.problems import MEDIA_TYPE
from tests.unit.api.api_app import Failing, app_over


def test_the_default_address_owns_its_loopback_names() -> None:
    assert own_origins("127.0.0.1", 8080) == ("http://127.0.0.1:8080", "http://localhost:8080")
    assert set(own_hosts("127.0.0.1")) == {"127.0.0.1", "localhost", "[::1]"}


def test_an_api_on_every_address_refuses_no_host() -> None:
    assert own_hosts("0.0.0.0") == ()
    assert own_origins("0.0.0.0", 80) == ("http://127.0.0.1:80", "http://localhost:80")


def test_a_named_host_owns_that_name() -> None:
    assert own_hosts("baton.internal") == ("baton.internal",)
    assert own_origins("baton.internal", 8080) == ("http://baton.internal:8080",)


def test_host_headers_and_origins_compare_by_name() -> None:
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "[::1]"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("evil.example.com:18080") == "evil.example.com"
    assert normalise_origin("HTTP://UI.Example.com:8443/") == "http://ui.example.com:8443"


@pytest.mark.parametrize(
    ("origin", "headers", "detail"),
    [
        ("https://page.example", "content-type", "Disallowed CORS origin"),
        ("https://ui.example", "x-other", "Disallowed CORS headers"),
    ],
)
async def test_a_refused_cors_preflight_is_a_problem(
    origin: str, headers: str, detail: str
) -> None:
    """Starlette's CORSMiddleware refuses a preflight with a plain-text 400; every error of the
    API is problem+json."""
    options = ApiOptions(allowed_origins=("https://ui.example",))
    app = app_over(Failing(OSError()), Failing(OSError()), options=options)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        response = await http.options(
            "/api/v1/signals",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": headers,
            },
        )
        allowed = await http.options(
            "/api/v1/signals",
            headers={"origin": "https://ui.example", "access-control-request-method": "POST"},
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["type"] == "urn:baton:problem:cors-not-allowed"
    assert body["detail"] == detail
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
