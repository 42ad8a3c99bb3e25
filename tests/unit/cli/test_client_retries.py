"""The CLI retries politely: it waits what Retry-After says, a few times, and only for the
answers that say nothing was done (a command that may still be applied is never resent)."""

from __future__ import annotations

import httpx
import pytest

from services.cli.client import RETRIES, ApiError, Client


def problem(kind: str, retry_after: str = "1") -> httpx.Response:
    return httpx.Response(
        503,
        json={"type": f"urn:baton:problem:{kind}", "title": "Service Unavailable", "detail": "x"},
        headers={"Retry-After": retry_after},
    )


def client(answers: list[httpx.Response]) -> tuple[Client, list[float], list[httpx.Request]]:
    waits: list[float] = []
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return (
        Client("http://baton", sleep=waits.append, transport=httpx.MockTransport(handler)),
        waits,
        seen,
    )


def test_an_overloaded_api_is_asked_again_after_retry_after() -> None:
    c, waits, seen = client(
        [
            problem("overloaded", "2"),
            problem("kafka-unavailable"),
            httpx.Response(202, json={"ok": 1}),
        ]
    )
    assert c.post("/signals", {"name": "s"}) == {"ok": 1}
    assert waits == [2.0, 1.0] and len(seen) == 3


def test_it_gives_up_after_a_few_tries_and_caps_the_wait() -> None:
    c, waits, seen = client([problem("overloaded", "600") for _ in range(RETRIES + 1)])
    with pytest.raises(ApiError) as err:
        c.get("/instances")
    assert err.value.status == 503 and len(seen) == RETRIES + 1 and waits == [10.0] * RETRIES


@pytest.mark.parametrize("kind", ["publish-timeout", "publish-failed", "unhealthy"])
def test_an_answer_that_may_have_done_something_is_not_resent(kind: str) -> None:
    c, waits, seen = client([problem(kind)])
    with pytest.raises(ApiError):
        c.post("/workflows/wf/instances", {})
    assert waits == [] and len(seen) == 1
