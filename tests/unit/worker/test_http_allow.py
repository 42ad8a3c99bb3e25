"""The http allow-list: entries for names (the scheme's default port unless one is given),
subdomains, IPv4 and IPv6 addresses and networks; and the addresses a name resolves to,
which must be public unless an address entry names them. The resolver is a table here, so
a name can answer what a rebinding attacker's DNS would."""

from __future__ import annotations

import ipaddress

import pytest

from services.worker.runtimes.http_allow import (
    HostAllowList,
    HttpRefused,
    Resolver,
    is_public,
    parse_entry,
)


def dns(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return table.get(host, [])

    return resolve


def test_a_name_entry_allows_the_default_port_only_unless_it_names_one() -> None:
    allowed = HostAllowList.from_env("api.example.com, db.example.com:5000, *.corp.example:*")
    assert allowed.allows_name("API.example.com", 443, 443)
    assert allowed.allows_name("api.example.com", 80, 80)
    assert not allowed.allows_name("api.example.com", 8080, 80)
    assert not allowed.allows_name("api.example.com", 80, 443)  # https://api...:80
    assert allowed.allows_name("db.example.com", 5000, 80)
    assert not allowed.allows_name("db.example.com", 80, 80)
    assert allowed.allows_name("x.corp.example", 1234, 80)
    assert not allowed.allows_name("corp.example", 80, 80)
    assert not allowed.allows_name("corp.example.evil.com", 80, 80)
    assert not allowed.allows_name("evilcorp.example", 80, 80)
    assert not HostAllowList.from_env("").allows_name("localhost", 80, 80)


def test_address_entries_cover_ipv4_ipv6_and_networks_on_their_ports() -> None:
    allowed = HostAllowList.from_env("127.0.0.1:*, [::1]:8080, 10.0.0.0/8, [fd00::/8]:*")

    def names(ip: str, port: int, default: int = 80) -> bool:
        return allowed.names_address(ipaddress.ip_address(ip), port, default)

    assert names("127.0.0.1", 9999) and not names("127.0.0.2", 80)
    assert names("::1", 8080) and not names("::1", 8081)
    assert names("10.1.2.3", 80) and not names("10.1.2.3", 8080)
    assert names("fd12::1", 443) and not names("fe80::1", 443)


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ("::1", "write an IPv6 address in brackets"),
        ("[::1", "an IPv6 entry is [address] or [address]:port"),
        ("[127.0.0.1]", "IPv6 addresses in brackets, IPv4 ones without"),
        ("10.0.0.1/8", "has host bits set"),
        ("api.example.com:0", "a port is a number 1-65535, or * for any"),
        ("api.example.com:http", "a port is a number"),
        ("api.example.com:\u00b2", "a port is a number"),
        ("0x7f.1", "reads as an IPv4 address in an unusual spelling"),
        ("2130706433:*", "reads as an IPv4 address"),
        ("exa mple.com", "not a host name"),
        ("*.", "not a host name"),
    ],
)
def test_a_bad_entry_stops_the_worker_with_the_entry_named(entry: str, needle: str) -> None:
    with pytest.raises(ValueError, match="BATON_HTTP_ALLOWED_HOSTS") as err:
        HostAllowList.from_env(f"ok.example.com, {entry}")
    assert repr(entry) in str(err.value) and needle in str(err.value), err.value


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_public_addresses_are() -> None:
    assert is_public(ipaddress.ip_address("93.184.216.34"))
    assert is_public(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"))
    assert is_public(ipaddress.ip_address("64:ff9b::5db8:d822"))  # NAT64 of a public one


async def test_a_name_allowed_by_name_that_resolves_to_an_internal_address_is_refused() -> None:
    """DNS rebinding: the allowed name answers 127.0.0.1 or the metadata address."""
    allowed = HostAllowList.from_env("api.example.com")
    resolve = dns({"api.example.com": ["169.254.169.254"]})
    with pytest.raises(HttpRefused) as err:
        await allowed.addresses("api.example.com", 80, 80, resolve)
    assert str(err.value) == (
        "host api.example.com resolves to 169.254.169.254, which is not a public address:"
        " allow it with an address entry in BATON_HTTP_ALLOWED_HOSTS (such as"
        " 169.254.169.254:80)"
    )


async def test_only_the_allowed_addresses_of_a_name_are_connected_to() -> None:
    allowed = HostAllowList.from_env("api.example.com, 10.0.0.0/8")
    resolve = dns({"api.example.com": ["127.0.0.1", "93.184.216.34", "10.0.0.7", "::1"]})
    assert await allowed.addresses("api.example.com", 80, 80, resolve) == [
        "93.184.216.34",
        "10.0.0.7",
    ]


async def test_an_address_literal_needs_an_address_entry_public_or_not() -> None:
    allowed = HostAllowList.from_env("[2001:db8::1]:8443, api.example.com")
    assert await allowed.addresses("2001:db8::1", 8443, 443, dns({})) == ["2001:db8::1"]
    for host in ("93.184.216.34", "::1"):
        with pytest.raises(HttpRefused, match="is not allowed on this worker"):
            await allowed.addresses(host, 443, 443, dns({}))
    with pytest.raises(HttpRefused, match=r"host \[::1\]:443 is not allowed"):
        await allowed.addresses("::1", 443, 443, dns({}))


async def test_a_name_not_allowed_is_refused_before_it_is_resolved() -> None:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"]

    with pytest.raises(HttpRefused, match=r"host other\.example\.com:80 is not allowed"):
        await HostAllowList.from_env("api.example.com").addresses(
            "other.example.com", 80, 80, resolve
        )
    assert asked == []


def test_an_entry_keeps_its_text() -> None:
    assert parse_entry(" API.example.com:8443 ").text == "API.example.com:8443"
