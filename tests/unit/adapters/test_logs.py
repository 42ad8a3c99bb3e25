"""The outage filter, on a fake clock: the first loss passes, repeats are summarised, the
end is one line with the outage's length; everything else passes untouched."""

from __future__ import annotations

import logging

import pytest

from services.adapters.logs import OutageFilter, kafka, postgres


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, level: int, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord(name, level, __file__, 1, msg, args or None, None)
    r.__dict__.update(extra)
    return r


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emitted() -> list[str]:
    return []


@pytest.fixture
def outage_filter(clock: Clock, emitted: list[str]) -> OutageFilter:
    return OutageFilter(
        [kafka("127.0.0.1:9092"), postgres()], clock=clock, ticker=False, emit=emitted.append
    )


def refused(node: int = 1) -> logging.LogRecord:
    return record(
        "aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", node, "refused"
    )


def test_records_of_a_healthy_stack_pass_untouched(outage_filter: OutageFilter) -> None:
    for r in (
        record("services.engine", logging.ERROR, "a real error"),
        record(
            "aiokafka.consumer.group_coordinator", logging.WARNING, "Heartbeat failed: rebalance"
        ),
        record("aiokafka.consumer.group_coordinator", logging.INFO, "Joined group %r", "g"),
        # A group starting on a fresh cluster: the coordinator's state, not a lost broker.
        record(
            "aiokafka.consumer.group_coordinator",
            logging.ERROR,
            "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError",
        ),
        record(
            "aiokafka.consumer.group_coordinator",
            logging.WARNING,
            "Marking the coordinator dead (node 1)for group baton-engine.",
        ),
    ):
        before = (r.levelno, r.msg)
        assert outage_filter.filter(r) is True
        assert (r.levelno, r.msg) == before
    assert outage_filter.open_outages() == []


def test_an_outage_is_three_lines_whatever_its_length(
    outage_filter: OutageFilter, clock: Clock, emitted: list[str]
) -> None:
    first = refused()
    assert outage_filter.filter(first)
    assert first.levelno == logging.WARNING
    assert first.getMessage().startswith("lost the connection to Kafka at 127.0.0.1:9092: ")
    assert "Unable connect to node with id 1" in first.getMessage()

    passed = []
    for i in range(1, 4500):  # 45 s of 100 failures a second
        clock.now = 1000.0 + i / 100
        r = (
            refused()
            if i % 2
            else record("aiokafka", logging.ERROR, "Unable to update metadata from [1]")
        )
        if outage_filter.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 1  # one summary, at 30 s
    assert passed[0].startswith("still unable to reach Kafka at 127.0.0.1:9092 after 30 s; ")
    assert "3000 similar messages suppressed in the last 30 s" in passed[0]

    outage_filter.tick()  # not quiet yet
    assert emitted == []
    clock.now += 9.9
    outage_filter.tick()
    assert emitted == []
    clock.now += 0.2
    outage_filter.tick()
    assert len(emitted) == 1
    assert emitted[0].startswith("Kafka at 127.0.0.1:9092 is reachable again: no failure for 10 s")
    assert "the outage lasted 45.0 s (first to last failure), 4499 similar messages" in emitted[0]
    assert outage_filter.open_outages() == []

    # The next loss is a new outage, told again.
    clock.now += 100
    assert outage_filter.filter(refused())
    assert outage_filter.open_outages() == ["kafka"]


def test_during_an_outage_info_lines_pass_once_per_template(
    outage_filter: OutageFilter, clock: Clock
) -> None:
    assert outage_filter.filter(refused())
    discovered = "Discovered coordinator %s for transactional id %s"
    results = [
        outage_filter.filter(
            record("aiokafka.producer.sender", logging.INFO, discovered, 1, f"p{i}")
        )
        for i in range(8)
    ]
    assert results == [True] + [False] * 7
    joined = record("aiokafka.consumer.group_coordinator", logging.INFO, "Joined group %r", "g")
    assert outage_filter.filter(joined)
    # Other WARNINGs of the same client are consequences: counted, not written.
    assert not outage_filter.filter(record("aiokafka.consumer", logging.WARNING, "anything else"))
    # Other loggers are never touched.
    assert outage_filter.filter(record("services.engine.engine", logging.ERROR, "shard failed"))


def test_a_traceback_is_dropped_from_the_first_line(outage_filter: OutageFilter) -> None:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except OSError:
        import sys

        r = logging.LogRecord(
            "asyncpg.pool",
            logging.WARNING,
            __file__,
            1,
            "Failed to restore the pool connection floor; retrying",
            None,
            sys.exc_info(),
        )
    assert outage_filter.filter(r)
    assert r.exc_info is None
    assert r.getMessage().startswith("lost the connection to PostgreSQL: Failed to restore")
    assert outage_filter.open_outages() == ["postgres"]


def test_services_are_independent_and_our_code_can_mark_a_loss(
    outage_filter: OutageFilter, clock: Clock, emitted: list[str]
) -> None:
    marked = record(
        "services.projector.consumer", logging.WARNING, "PostgreSQL away", outage="postgres"
    )
    assert outage_filter.filter(marked)
    assert marked.getMessage().startswith("lost the connection to PostgreSQL")
    assert not outage_filter.filter(
        record("services.projector.consumer", logging.WARNING, "still away", outage="postgres")
    )
    assert outage_filter.filter(refused())  # Kafka's first loss is its own
    assert sorted(outage_filter.open_outages()) == ["kafka", "postgres"]
    clock.now += 11
    outage_filter.tick()
    assert len(emitted) == 2


def test_the_emitted_end_line_passes_its_own_filter(clock: Clock) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, r: logging.LogRecord) -> None:
            lines.append(r.getMessage())

    f = OutageFilter([kafka("k:1")], clock=clock, ticker=False)
    handler = Keep()
    handler.addFilter(f)
    logger = logging.getLogger("aiokafka")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logger.error("Unable connect to node with id 1: refused")
        logger.error("Unable connect to node with id 1: refused")
        clock.now += 11
        f.tick()
    finally:
        root.removeHandler(handler)
    assert len(lines) == 2
    assert lines[0].startswith("lost the connection to Kafka at k:1")
    assert lines[1].startswith("Kafka at k:1 is reachable again")


def test_our_code_can_end_an_outage_at_once(
    outage_filter: OutageFilter, emitted: list[str]
) -> None:
    assert outage_filter.filter(
        record("asyncpg.pool", logging.WARNING, "Failed to restore the pool connection floor")
    )
    assert not outage_filter.filter(
        record("asyncpg.pool", logging.WARNING, "Failed to restore the pool connection floor")
    )
    back = record(
        "services.projector.consumer", logging.INFO, "back after 3 s", outage_over="postgres"
    )
    assert outage_filter.filter(back)
    assert back.getMessage() == "back after 3 s (1 similar messages suppressed)"
    assert back.levelno == logging.INFO
    assert outage_filter.open_outages() == []
    outage_filter.tick()
    assert emitted == []  # no second end line
    # Without an open outage the line passes untouched.
    again = record("services.projector.consumer", logging.INFO, "back", outage_over="postgres")
    assert outage_filter.filter(again) and again.getMessage() == "back"


def test_our_records_about_a_lost_broker_join_its_outage(outage_filter: OutageFilter) -> None:
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    from services.adapters.logs import kafka_loss

    assert kafka_loss(KafkaConnectionError("Connection at 127.0.0.1:9092 closed")) == {
        "outage": "kafka"
    }
    assert kafka_loss(MessageSizeTooLargeError()) == {}
    err = KafkaConnectionError("Unable to bootstrap")
    first = record("services.worker.runner", logging.WARNING, "heartbeat not sent: %r", err)
    first.__dict__.update(kafka_loss(err))
    assert outage_filter.filter(first)
    assert first.getMessage().startswith("lost the connection to Kafka at 127.0.0.1:9092")
    again = record("services.worker.runner", logging.WARNING, "heartbeat not sent: %r", err)
    again.__dict__.update(kafka_loss(err))
    assert not outage_filter.filter(again)
    # A record without the mark from the same logger is not the outage's business.
    assert outage_filter.filter(record("services.worker.runner", logging.WARNING, "other"))
