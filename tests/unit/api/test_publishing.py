"""The API's publish gate: an answer within a bound whatever Kafka does; nothing queued behind
a broker that just failed; one probe at a time; a bound on publishes in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from services.api.problems import Problem
from services.api.publishing import PublishGate
from tests.helpers import wait_until_async
from tests.unit.api.api_app import app_over


class Send:
    """A send that completes when told to (or never), and says whether it ran."""

    def __init__(self) -> None:
        self.ran = False
        self.done = asyncio.Event()

    async def __call__(self) -> str:
        self.ran = True
        await self.done.wait()
        return "acked"


async def refused(gate: PublishGate, send: Any, **extra: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        await gate.send(send, extra or None)
    return caught.value


async def test_a_send_not_acknowledged_in_time_answers_503_and_closes_the_gate() -> None:
    gate = PublishGate(timeout_s=0.05)
    hung = Send()
    problem = await refused(gate, hung(), instance_id="wf~1")
    assert problem.status == 503 and problem.type.endswith(":publish-timeout")
    assert problem.retry_after == 2 and problem.extra == {"instance_id": "wf~1"}
    assert "may still be applied" in problem.detail
    assert gate.failing and gate.status == "unavailable" and gate.in_flight == 0
    # Closed: the next one is refused at once, and nothing of it runs (nothing is enqueued).
    next_send = Send()
    problem = await refused(gate, next_send())
    assert problem.type.endswith(":kafka-unavailable") and not next_send.ran


async def test_after_the_pause_one_probe_goes_and_its_ack_opens_the_gate() -> None:
    gate = PublishGate(timeout_s=5.0)
    gate._failed()
    gate.closed_until = 0.0  # the pause is over
    probe = Send()
    probing = asyncio.create_task(gate.send(probe()))
    await wait_until_async(lambda: probe.ran, interval=0.001)  # the probe is in flight
    assert gate.probing
    other = Send()
    assert (await refused(gate, other())).type.endswith(":kafka-unavailable")
    assert not other.ran
    probe.done.set()
    assert await probing == "acked"
    assert (gate.failing, gate.status, gate.probing) == (False, "ok", False)
    ok = Send()
    ok.done.set()
    assert await gate.send(ok()) == "acked"


async def test_more_than_the_bound_in_flight_is_shed() -> None:
    gate = PublishGate(max_in_flight=2)
    waiting = [Send() for _ in range(2)]
    tasks = [asyncio.create_task(gate.send(s())) for s in waiting]
    await wait_until_async(lambda: all(s.ran for s in waiting), interval=0.001)
    assert gate.in_flight == 2
    shed = Send()
    problem = await refused(gate, shed())
    assert problem.type.endswith(":overloaded") and problem.retry_after == 1 and not shed.ran
    for s in waiting:
        s.done.set()
    assert await asyncio.gather(*tasks) == ["acked", "acked"]
    assert not gate.failing


async def test_a_command_too_large_is_its_own_fault_not_kafkas() -> None:
    gate = PublishGate()

    async def too_large() -> None:
        raise MessageSizeTooLargeError()

    with pytest.raises(MessageSizeTooLargeError):
        await gate.send(too_large())
    assert not gate.failing


async def test_the_api_answers_retry_after_and_health_says_the_producer_is_unavailable() -> None:
    app = app_over(object(), _Away())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        first = await http.post("/api/v1/signals", json={"name": "s"})
        second = await http.post("/api/v1/signals", json={"name": "s"})
    assert first.status_code == 503 and first.headers["retry-after"] == "2"
    assert first.json()["type"] == "urn:baton:problem:publish-failed"
    assert second.status_code == 503 and "retry-after" in second.headers
    assert second.json()["type"] == "urn:baton:problem:kafka-unavailable"
    assert app.state.deps.gate.status == "unavailable"


class _Away:
    """A producer whose broker is away."""

    _closed = False

    async def send_and_wait(self, *_: Any, **__: Any) -> Any:
        raise KafkaConnectionError("away")


async def test_beyond_the_request_bound_the_api_sheds_at_once_but_answers_health() -> None:
    from services.api.app import ApiOptions

    hung = asyncio.Event()

    class Hanging:
        _closed = False

        async def send_and_wait(self, *_: Any, **__: Any) -> Any:
            await hung.wait()

    app = app_over(object(), Hanging(), options=ApiOptions(max_requests=2))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        held = [
            asyncio.create_task(http.post("/api/v1/signals", json={"name": "s"})) for _ in range(2)
        ]
        limit = app.state.load
        await wait_until_async(lambda: limit.in_progress == 2, interval=0.001)
        shed = await http.post("/api/v1/signals", json={"name": "s"})
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert shed.json()["type"] == "urn:baton:problem:overloaded"
        health = await http.get("/health")
        assert health.json()["type"] != "urn:baton:problem:overloaded"  # answered, not shed
        hung.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [202, 202]
    assert limit.shed == 1 and limit.in_progress == 0


async def test_a_send_that_timed_out_and_is_acknowledged_later_opens_the_gate() -> None:
    gate = PublishGate(timeout_s=0.01)
    late = Send()
    await refused(gate, late())
    assert gate.status == "unavailable"
    late.done.set()  # Kafka is back: the record the producer kept is delivered
    await wait_until_async(lambda: not gate.failing, interval=0.001)
    assert gate.status == "ok" and gate.closed_until == 0.0


def test_a_failure_is_reported_for_a_while_not_for_ever() -> None:
    gate = PublishGate()
    gate._failed()
    assert gate.status == "unavailable"
    gate.failed_at -= 31
    assert gate.status == "ok" and gate.failing  # the next publish is still a probe
