"""Sending commands to the engine: the one way the API, CLI and workers talk to it."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from services.adapters.avro import Codec
from services.adapters.kafka import TOPIC_COMMANDS
from services.domain.protocol.commands import Command, CommandEnvelope
from services.domain.protocol.routing import command_key


def now_micros() -> int:
    return time.time_ns() // 1000


def envelope(command: Command) -> CommandEnvelope:
    return CommandEnvelope(command_id=uuid.uuid4().hex, issued_at=now_micros(), payload=command)


async def send_command(
    producer: AIOKafkaProducer, codec: Codec, command: Command
) -> tuple[CommandEnvelope, RecordMetadata]:
    """Publish and wait for the broker's ack. Keyed by aggregate id, so per-instance order holds."""
    env = envelope(command)
    meta = await producer.send_and_wait(
        TOPIC_COMMANDS, codec.encode_command(env), key=command_key(command).encode()
    )
    return env, meta


async def send_envelopes(
    producer: AIOKafkaProducer, codec: Codec, envelopes: list[CommandEnvelope]
) -> None:
    """Publish several commands back to back and wait for every ack. Enqueued without a pause
    in between, commands for one aggregate leave in one produce request, so the engine reads
    them in one fetch and decides them in one transaction."""
    futures = [
        await producer.send(
            TOPIC_COMMANDS, codec.encode_command(env), key=command_key(env.payload).encode()
        )
        for env in envelopes
    ]
    # Every ack is awaited (none left unretrieved), then the first failure is raised.
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
