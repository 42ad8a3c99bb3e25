"""What an `http` step's url may be, checked at push time (its literal parts) and again by
the worker (the url as filled): http or https, a host, no credentials, and an IPv4 address
only in its one ordinary spelling. A step may not set the Host header either.

Push-time only (analysis.py calls `http_step_faults`), never when a stored version is
loaded: versions pushed before these rules must still load and replay.

Why the spelling: resolvers read `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` as
127.0.0.1 (inet_aton), and browsers do the same (the WHATWG URL standard: a host whose last
label is a number is an IPv4 address), so such a host hides an address behind what looks
like a name to a reader or to an allow-list. A host whose last label is a number must be
four decimal numbers 0-255 without leading zeros.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

SCHEMES = ("http", "https")


# The last label of a host that URL parsers read as a number: decimal or 0x-hex (octal is
# decimal digits with a leading 0).
_NUMBER_LABEL = re.compile(r"^(?:0[xX][0-9A-Fa-f]*|[0-9]+)$")


_SCHEME_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


_TEMPLATE_START = re.compile(r"\$\$?\{")


_CREDENTIALS = (
    "a url may not hold credentials (user:password@): they would be shown in the step's"
    " messages and events; send them in a header"
)


def ipv4_spelling_fault(host: str) -> str | None:
    """Why `host` is an IPv4 address written in an unusual way (None when it is not)."""
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not _NUMBER_LABEL.match(labels[-1]):
        return None  # a name
    try:
        if str(ipaddress.IPv4Address(host)) == host:
            return None
    except ValueError:
        pass
    return (
        f"{host!r} reads as an IPv4 address in an unusual spelling (hex, octal, a single"
        " number or fewer than four parts); write it as four decimal numbers, such as"
        " 192.0.2.10"
    )


def url_fault(url: str) -> str | None:
    """Why `url` (no templates left) cannot be an http step's url, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as err:
        return f"invalid url {url!r}: {err}"
    if parts.scheme.lower() not in SCHEMES:
        return f"the url's scheme is {parts.scheme!r}: an http step's url is http(s)://host/..."
    return _authority_fault(parts.netloc, parts.hostname)


def _authority_fault(netloc: str, host: str | None) -> str | None:
    if "@" in netloc:
        return _CREDENTIALS
    if not host:
        return "the url has no host: write http(s)://host/..."
    if "%" in host:
        return "an IPv6 zone (%...) cannot be used in an http step's url"
    return ipv4_spelling_fault(host)


def template_url_fault(url: str) -> str | None:
    """`url_fault` of the literal parts of a url that may hold `${...}`: the scheme when it is
    written, the authority (host, port, no credentials) when it is written whole."""
    start = _TEMPLATE_START.search(url)
    if start is None:
        return url_fault(url)
    prefix = url[: start.start()]
    scheme = _SCHEME_PREFIX.match(prefix)
    if scheme is None:
        return None  # `${base}/path`: the worker checks the filled url
    if scheme.group(1).lower() not in SCHEMES:
        return f"the url's scheme is {scheme.group(1)!r}: an http step's url is http(s)://host/..."
    rest = prefix[scheme.end() :]
    if not rest.startswith("//"):
        return "an http step's url is http(s)://host/..."
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)
    if len(authority) == 1:  # the authority goes on into a template: check what is written
        return _CREDENTIALS if "@" in authority[0] else None
    return url_fault(f"{scheme.group(1)}://{authority[0]}/")


def http_step_faults(url: str, headers: Mapping[str, str], at: str) -> list[tuple[str, str]]:
    """The push-time faults of an http step at `at` (its `url` and `headers`)."""
    faults = []
    fault = template_url_fault(url)
    if fault:
        faults.append((f"{at}.url", fault))
    if any(name.lower() == "host" for name in headers):
        faults.append(
            (
                f"{at}.headers",
                "the Host header is the url's host (a step's own would reach another site at"
                " the address the worker checked): put the host in the url",
            )
        )
    return faults
