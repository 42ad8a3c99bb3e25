"""Where an `http` step may connect: the worker's allow-list (`BATON_HTTP_ALLOWED_HOSTS`)
over names, ports and addresses, and the addresses a name resolves to.

Entries, comma-separated, each `HOST` or `HOST:PORT`:

    api.example.com          that name, on the url scheme's default port (80 or 443)
    api.example.com:8443     that name, on port 8443
    *.internal.corp:*        any name under internal.corp (not internal.corp), any port
    192.0.2.10:8080          that IPv4 address; [2001:db8::1]:443 an IPv6 one
    10.0.0.0/8:*             any address of the network; [fd00::/8]:443 an IPv6 one

A url's host must match an entry: a name a name entry, an address literal an address
entry. Then every address the worker would connect to must be **public**, unless an
address entry names it (with the port): a name allowed by name but resolving to a
loopback, private, link-local (169.254.169.254, the cloud metadata service), unique-local,
shared, reserved, multicast or unspecified address is not reached. That is the operator's
explicit opt-in for internal services: `internal.corp:*, 10.0.0.0/8:*`.

The worker resolves a name once, checks the addresses and connects to a checked address
itself: resolving again at connect time would let a name answer a public address to the
check and a private one to the connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from services.domain.language.http_urls import ipv4_spelling_fault

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SETTING = "BATON_HTTP_ALLOWED_HOSTS"
_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$"
)
# NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address reached through
# the translator. ipaddress treats it as global.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class HttpRefused(Exception):
    """The url may not be reached from this worker: the message says why."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a public unicast address (and so is any IPv4 address it carries)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One entry: a name (`name`), the names under a domain (`suffix`, with its leading dot)
    or a network (`network`); `port` None means the scheme's default port."""

    text: str
    name: str | None = None
    suffix: str | None = None
    network: IPNetwork | None = None
    port: int | None = None
    any_port: bool = False

    def port_allows(self, port: int, default_port: int) -> bool:
        return self.any_port or port == (default_port if self.port is None else self.port)


def parse_entry(text: str) -> AllowEntry:
    """An entry of the allow-list, or ValueError saying what is wrong with it."""
    text = text.strip()
    entry = text.lower()
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: an IPv6 entry is [address] or [address]:port")
        port_text = rest[1:] if rest else None
    else:
        if entry.count(":") > 1:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:8080")
        host, colon, port_part = entry.partition(":")
        port_text = port_part if colon else None
    port, any_port = _port(text, port_text)
    if "/" in host or entry.startswith("["):
        try:
            network = ipaddress.ip_network(host)
        except ValueError as err:
            raise ValueError(f"{text!r}: {err}") from None
        if entry.startswith("[") != (network.version == 6):
            raise ValueError(f"{text!r}: IPv6 addresses in brackets, IPv4 ones without")
        return AllowEntry(text, network=network, port=port, any_port=any_port)
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return AllowEntry(text, network=ipaddress.ip_network(address), port=port, any_port=any_port)
    spelling = ipv4_spelling_fault(host)
    if spelling:
        raise ValueError(f"{text!r}: {spelling}")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if not _NAME.match(name):
        raise ValueError(f"{text!r}: not a host name, *.domain, address or network")
    name = name.rstrip(".")
    if wildcard:
        return AllowEntry(text, suffix="." + name, port=port, any_port=any_port)
    return AllowEntry(text, name=name, port=port, any_port=any_port)


def _port(text: str, port_text: str | None) -> tuple[int | None, bool]:
    if port_text is None:
        return None, False
    if port_text == "*":
        return None, True
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: a port is a number 1-65535, or * for any")
    return int(port_text), False


Resolver = Callable[[str, int], Awaitable[list[str]]]


class HostAllowList:
    """The worker's allow-list; see the module's doc for what the entries mean."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(parse_entry(e) for e in entries if e.strip())

    @classmethod
    def from_env(cls, value: str | None) -> HostAllowList:
        """The setting's value, or ValueError naming the entry that is wrong."""
        try:
            return cls((value or "").split(","))
        except ValueError as err:
            raise ValueError(f"{SETTING}: {err}") from None

    def allows_name(self, host: str, port: int, default_port: int) -> bool:
        host = host.lower().rstrip(".")
        return any(
            e.port_allows(port, default_port)
            and (host == e.name or (e.suffix is not None and host.endswith(e.suffix)))
            for e in self.entries
        )

    def names_address(self, ip: IPAddress, port: int, default_port: int) -> bool:
        """Whether an address entry covers `ip` on `port`."""
        return any(
            e.network is not None
            and e.port_allows(port, default_port)
            and ip.version == e.network.version
            and ip in e.network
            for e in self.entries
        )

    async def addresses(
        self, host: str, port: int, default_port: int, resolve: Resolver
    ) -> list[str]:
        """The addresses the worker may connect to for `host:port`, in the resolver's order
        (at least one), or HttpRefused saying why there is none."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not self.names_address(literal, port, default_port):
                raise HttpRefused(_not_allowed(host, port))
            return [str(literal)]
        if not self.allows_name(host, port, default_port):
            raise HttpRefused(_not_allowed(host, port))
        found = list(dict.fromkeys(await resolve(host, port)))
        if not found:
            raise HttpRefused(f"host {host} has no address")
        allowed = []
        for text in found:
            ip = ipaddress.ip_address(text.partition("%")[0])
            if is_public(ip) or self.names_address(ip, port, default_port):
                allowed.append(str(ip))
        if not allowed:
            raise HttpRefused(
                f"host {host} resolves to {found[0]}, which is not a public address: allow"
                f" it with an address entry in {SETTING} (such as {_entry_for(found[0], port)})"
            )
        return allowed


def _not_allowed(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"host {shown}:{port} is not allowed on this worker ({SETTING})"


def _entry_for(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
