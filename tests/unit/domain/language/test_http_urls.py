"""An http step's url at push time: http or https, a host, no credentials, and no IPv4
address in a spelling that hides it (`0177.0.0.1`, `2130706433`, `0x7f.1`, `127.1`); its
literal parts only, when it holds templates. Each fault at `steps[i].url`."""

from __future__ import annotations

import pytest

from services.domain.kernel.errors import DefinitionError
from services.domain.language.parse import parse_workflow
from services.domain.language.workflow import Workflow, load_workflow

PARAMS = {"host": "h", "port": 80, "path": "p", "base_url": "https://x", "id": 1}


def url_faults(url: str) -> list[tuple[str, str]]:
    try:
        step = {"id": "call", "type": "http", "url": url}
        parse_workflow({"id": "wf", "params": PARAMS, "steps": [step]})
    except DefinitionError as err:
        return err.faults
    return []


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://2130706433/", "'2130706433' reads as an IPv4 address in an unusual spelling"),
        ("http://0177.0.0.1/", "'0177.0.0.1' reads as an IPv4 address"),
        ("https://0x7f.1/admin", "'0x7f.1' reads as an IPv4 address"),
        ("http://127.1:8080/", "'127.1' reads as an IPv4 address"),
        ("http://0x7f000001/${path}", "'0x7f000001' reads as an IPv4 address"),
        ("ftp://files.example.com/x", "the url's scheme is 'ftp'"),
        ("file:///etc/passwd", "the url's scheme is 'file'"),
        ("gopher://${host}/", "the url's scheme is 'gopher'"),
        ("http:///path", "the url has no host"),
        ("example.com/path", "the url's scheme is ''"),
        ("https://user:secret@api.example.com/", "may not hold credentials"),
        ("http://[fe80::1%25eth0]/", "an IPv6 zone"),
        ("http://api.example.com:99999/", "Port out of range"),
    ],
)
def test_a_url_that_is_not_plain_http_to_a_host_is_refused_with_its_path(
    url: str, needle: str
) -> None:
    [(path, message)] = url_faults(url)
    assert path == "steps[0].url"
    assert needle in message, message


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/items?x=1",
        "http://192.0.2.10:8080/",
        "http://[2001:db8::1]:8080/",
        "https://api.example.com/items/${params.id}",
        "${base_url}/items",  # the worker checks the filled url
        "https://${host}/x",
        "http://api.example.com:${port}/",
        "https://sub.2024.example.com/",  # a number inside a name is not an address
    ],
)
def test_ordinary_urls_and_templated_parts_pass(url: str) -> None:
    assert url_faults(url) == []


def test_a_host_header_is_refused_the_url_names_the_host() -> None:
    step = {"id": "call", "type": "http", "url": "https://api.example.com/", "headers": {}}
    step["headers"] = {"HOST": "metadata.internal"}
    with pytest.raises(DefinitionError) as err:
        parse_workflow({"id": "wf", "steps": [step]})
    [(path, message)] = err.value.faults
    assert path == "steps[0].headers"
    assert "the Host header is the url's host" in message


def test_a_version_pushed_before_these_rules_still_loads() -> None:
    """The checks are push-time only: a stored version is loaded, never judged again, so
    its instances replay."""
    step = {"id": "call", "type": "http", "url": "http://127.1/", "headers": {"Host": "x"}}
    stored = Workflow.model_validate({"id": "wf", "steps": [step]}).to_json()
    assert load_workflow(stored).steps[0].url == "http://127.1/"  # type: ignore[union-attr]


def test_an_http_step_inside_a_loop_is_checked_at_its_path() -> None:
    body = [{"id": "call", "type": "http", "url": "http://2130706433/"}]
    loop = {"id": "each", "type": "foreach", "items": [1, 2], "steps": body}
    with pytest.raises(DefinitionError) as err:
        parse_workflow({"id": "wf", "steps": [loop]})
    [(path, message)] = err.value.faults
    assert path == "steps[0].steps[0].url" and "'2130706433' reads as" in message
