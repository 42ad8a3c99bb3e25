"""Which origins and Host names the API calls its own (services/api/origins.py)."""

from __future__ import annotations

from services.api.origins import host_name, normalise_origin, own_hosts, own_origins


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
