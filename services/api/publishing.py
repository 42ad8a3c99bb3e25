"""Publishing a command from the API: an answer within a bound, whatever Kafka does.

A route waits for the broker's ack at most PUBLISH_TIMEOUT_S, then answers 503 problem+json
`publish-timeout` with Retry-After: a client never hangs on a broker that is away (a start
used to hang past a 60 s client timeout). Once Kafka has failed to take a command (a timeout,
an error), the API stops queueing more behind it: for GATE_CLOSED_S every publish answers 503
`kafka-unavailable` at once and enqueues nothing; then one publish at a time tries again, and
the first one acknowledged opens the gate. At most MAX_IN_FLIGHT publishes wait for an ack at
once; one more is shed with 503 `overloaded` (Retry-After too), so a flood cannot pile up
without bound.

A command that timed out may still be applied when Kafka is back: the idempotent producer
keeps it and retries (it never writes it twice), and nothing can take it back. The 503 says
so, and a start names the instance id it tried; a retry with the same Idempotency-Key is the
same start. When such a command is acknowledged after all (Kafka is back), the gate opens
too. `/health` reports `producer: unavailable` while Kafka's last answer was a failure, for at
most FAILURE_SHOWN_S after it (a failure no publish has followed since says little more).

Hand-written rather than a circuit-breaker library: the state is three numbers, and what it
must do on each transition (enqueue nothing while closed, probe one at a time) is specific to
aiokafka's producer, which cannot withdraw a record once sent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from services.api.problems import Problem

T = TypeVar("T")

PUBLISH_TIMEOUT_S = 5.0
GATE_CLOSED_S = 2.0
MAX_IN_FLIGHT = 1000
FAILURE_SHOWN_S = 30.0


@dataclass
class PublishGate:
    """What the API has seen of Kafka taking its commands (see the module's docs)."""

    failing: bool = False  # Kafka's last answer was a failure: the next publish is a probe
    failed_at: float = 0.0  # time.monotonic() of that failure
    closed_until: float = 0.0  # time.monotonic(); before it, nothing is sent
    probing: bool = False
    in_flight: int = 0
    timeout_s: float = PUBLISH_TIMEOUT_S
    closed_s: float = GATE_CLOSED_S
    max_in_flight: int = MAX_IN_FLIGHT

    @property
    def status(self) -> str:
        recent = time.monotonic() - self.failed_at < FAILURE_SHOWN_S
        return "unavailable" if self.failing and recent else "ok"

    async def send(self, sending: Awaitable[T], extra: dict[str, Any] | None = None) -> T:
        """`sending`'s result once the broker acknowledged it, or the Problem the module's docs
        describe (`extra` goes into its body)."""
        now = time.monotonic()
        if now < self.closed_until or (self.failing and self.probing):
            _close(sending)
            wait = max(1, math.ceil(self.closed_until - now))
            raise _unavailable(
                "kafka-unavailable",
                "Kafka did not take the last command; nothing was sent. Retry shortly",
                wait,
                extra,
            )
        if self.in_flight >= self.max_in_flight:
            _close(sending)
            raise Problem(
                503,
                "Service Unavailable",
                f"{self.in_flight} commands are waiting for Kafka already; nothing was sent."
                " Retry shortly",
                kind="overloaded",
                extra=extra,
                retry_after=1,
            )
        probe = self.failing
        self.probing = self.probing or probe
        self.in_flight += 1
        task = asyncio.ensure_future(sending)
        try:
            # Shielded: a send that times out goes on, and its late ack opens the gate.
            result = await asyncio.wait_for(asyncio.shield(task), self.timeout_s)
        except MessageSizeTooLargeError:
            raise  # the command's fault, not Kafka's
        except (TimeoutError, KafkaError) as err:
            self._failed()
            if isinstance(err, TimeoutError):
                task.add_done_callback(self._late)
                raise _unavailable(
                    "publish-timeout",
                    f"Kafka did not acknowledge the command within {self.timeout_s:g} s; it may"
                    " still be applied once Kafka is back (retry with the same Idempotency-Key"
                    " to make a retry the same request)",
                    math.ceil(self.closed_s),
                    extra,
                ) from err
            raise _unavailable(
                "publish-failed",
                f"the command could not be published to Kafka: {err}",
                math.ceil(self.closed_s),
                extra,
            ) from err
        finally:
            self.in_flight -= 1
            if probe:
                self.probing = False
        self._acknowledged()
        return result

    def _failed(self) -> None:
        self.failing = True
        self.failed_at = time.monotonic()
        self.closed_until = self.failed_at + self.closed_s

    def _acknowledged(self) -> None:
        self.failing = False
        self.closed_until = 0.0

    def _late(self, task: asyncio.Future[Any]) -> None:
        """A send that timed out has ended: acknowledged after all, or failed for good."""
        if not task.cancelled() and task.exception() is None:
            self._acknowledged()


def _close(sending: Awaitable[Any]) -> None:
    # A coroutine never awaited would warn; nothing of it ran.
    close = getattr(sending, "close", None)
    if close is not None:
        close()


def _unavailable(kind: str, detail: str, retry_after: int, extra: dict[str, Any] | None) -> Problem:
    return Problem(
        503, "Service Unavailable", detail, kind=kind, extra=extra, retry_after=retry_after
    )


@dataclass(frozen=True, slots=True)
class Publisher:
    """The producer a route publishes with, behind the API's one gate."""

    producer: AIOKafkaProducer
    gate: PublishGate
