"""SIGTERM while the engine folds a long partition: the process ends promptly, having written
nothing (a fold commits nothing; the next owner folds again)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from services.adapters.kafka import TOPIC_EVENTS, new_consumer
from services.adapters.settings import REPO_ROOT, Settings
from tests.helpers import wait_until_async
from tests.integration.engine_harness import long_partition, prepare_topics

pytestmark = pytest.mark.chaos

LONG = 6
# About 10 s of folding on this machine (3 events each, ~11,000 events/s).
LONG_INSTANCES = 40_000
# What "promptly" means: well under the fold, well over a loaded machine's shutdown.
STOP_DEADLINE_S = 4.0


def spawn_engine(log_path: Path, kafka: str) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.engine", "--id", "chaos-fold"],
            cwd=REPO_ROOT,
            # No snapshots: the fold of a long log is what is tested, and that log is deleted
            # after the test (a snapshot of it would outlive it).
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "BATON_SNAPSHOT_INTERVAL_MS": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def end_offset(kafka: str, tp: TopicPartition) -> int:
    consumer = new_consumer(kafka, None)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_sigterm_during_a_long_fold_stops_the_engine_promptly(
    history_kafka: str, settings: Settings
) -> None:
    kafka = history_kafka
    await prepare_topics(kafka)
    tp = TopicPartition(TOPIC_EVENTS, LONG)
    async with long_partition(kafka, LONG, LONG_INSTANCES):
        before = await end_offset(kafka, tp)
        log_path = settings.home / "logs" / "engine-fold-sigterm.log"
        engine = spawn_engine(log_path, kafka)
        try:
            # aiokafka logs the assignment just before the engine starts taking it (folding).
            await wait_until_async(
                lambda: b"Setting newly assigned partitions" in log_path.read_bytes(),
                timeout=60,
                message="the engine is assigned its partitions",
            )
            assert engine.poll() is None
            t0 = time.monotonic()
            engine.send_signal(signal.SIGTERM)
            await wait_until_async(
                lambda: engine.poll() is not None,
                timeout=STOP_DEADLINE_S,
                message=f"the engine ends within {STOP_DEADLINE_S} s of SIGTERM",
            )
            print(f"SIGTERM during the fold: the engine ended in {time.monotonic() - t0:.2f} s")
        finally:
            if engine.poll() is None:
                engine.kill()
                engine.wait()
        text = log_path.read_text()
        # Stopped mid-fold, not after it (the line recovery logs once p6 is folded).
        assert not re.search(r"p6: .*folded \d+ events", text)
        assert engine.returncode == 0, text[-2000:]
        assert await end_offset(kafka, tp) == before  # nothing written
