"""Logging for every Baton process: one format, and outages told in a few lines, not thousands.

While Kafka or PostgreSQL is away, their clients retry every few milliseconds and log every
failure: a 28 s broker outage wrote ~28,000 lines across the processes. `OutageFilter`, set on
the root handler by `setup_logging`, collapses them, per backing service:

- the first record that says a connection is lost passes, at WARNING, without its traceback;
- from then on that service's client records at WARNING and above are counted, not written,
  and its INFO records pass once per message template (a rejoin's "Joined group" still
  shows, the same "Discovered coordinator" for each retry does not);
- every `summary_every_s` (30 s) one WARNING says the service is still unreachable, for how
  long, and how many records were suppressed;
- after `quiet_after_s` (10 s) without a failure, one WARNING says the outage is over, how
  long it lasted (first to last failure) and how many records it suppressed in all.

Hand-written: the standard library and the well-kept logging packages deduplicate or
rate-limit identical records, but none knows an outage's start, its repeats in other words,
and its end. Our own code marks a record as a connection loss with
``extra={"outage": "kafka" | "postgres"}``, and one that proves the service is back (which
ends the outage at once) with ``extra={"outage_over": ...}``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SUMMARY_EVERY_S = 30.0
QUIET_AFTER_S = 10.0
TICK_S = 1.0
FORMAT = "%(asctime)s %(levelname)s {process} %(name)s: %(message)s"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Service:
    """A backing service whose outages are collapsed: its clients' loggers, and the words
    of theirs that mean a connection is lost."""

    key: str
    label: str  # as the messages name it: "Kafka at 127.0.0.1:9092"
    loggers: tuple[str, ...]
    loss: re.Pattern[str]

    def owns(self, logger_name: str) -> bool:
        return any(logger_name == n or logger_name.startswith(n + ".") for n in self.loggers)


# aiokafka's words for "the broker cannot be reached", from an 18 s outage's 10,000 lines.
# Not the coordinator's state ("Marking the coordinator dead", GroupCoordinatorNotAvailable):
# a group's start on a fresh cluster says those too, with the broker up.
KAFKA_LOSS = re.compile(
    r"Unable connect to node|Unable to (?:update|request) metadata|NodeNotReadyError"
    r"|KafkaConnectionError|Connection refused|Connect call failed|Connection at \S+ closed"
    r"|RequestTimedOutError|KafkaTimeoutError"
)
# asyncpg's pool retrying its connections ("Failed to restore the pool connection floor").
POSTGRES_LOSS = re.compile(r"connection floor|Connection refused|connection is closed")


def kafka_loss(err: BaseException) -> dict[str, str]:
    """`extra=` for our own record about `err`: marks it as a lost connection to Kafka when
    it is one (by the same words as aiokafka's), so an outage collapses it too."""
    return {"outage": "kafka"} if KAFKA_LOSS.search(f"{type(err).__name__}: {err}") else {}


def kafka(bootstrap: str) -> Service:
    return Service("kafka", f"Kafka at {bootstrap}", ("aiokafka",), KAFKA_LOSS)


def postgres(where: str = "PostgreSQL") -> Service:
    return Service("postgres", where, ("asyncpg",), POSTGRES_LOSS)


@dataclass(slots=True)
class _Outage:
    began: float
    last_failure: float
    last_summary: float
    suppressed: int = 0  # since the last summary
    total: int = 0
    templates: set[str] = field(default_factory=set)


class OutageFilter(logging.Filter):
    """Collapses each service's outage into a few lines (see the module's docstring).

    Thread-safe. `clock` is injectable for tests; `tick()` ends the outages that have gone
    quiet, and is called every `TICK_S` by a daemon thread while one is open (unless
    `ticker=False`, when the caller calls it)."""

    def __init__(
        self,
        services: list[Service],
        *,
        clock: Callable[[], float] = time.monotonic,
        summary_every_s: float = SUMMARY_EVERY_S,
        quiet_after_s: float = QUIET_AFTER_S,
        ticker: bool = True,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._services = services
        self._clock = clock
        self._summary_every_s = summary_every_s
        self._quiet_after_s = quiet_after_s
        self._ticker = ticker
        self._emit = emit or (lambda text: log.warning("%s", text))
        self._lock = threading.Lock()
        self._open: dict[str, _Outage] = {}
        self._thread: threading.Thread | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        service = self._service_of(record)
        if service is None:
            return True
        message = record.getMessage()
        if getattr(record, "outage_over", None) == service.key:
            return self._over(service, record, message)
        lost = getattr(record, "outage", None) == service.key or (
            record.levelno >= logging.WARNING and bool(service.loss.search(message))
        )
        now = self._clock()
        with self._lock:
            outage = self._open.get(service.key)
            if outage is None:
                if not lost:
                    return True
                self._open[service.key] = _Outage(began=now, last_failure=now, last_summary=now)
                self._start_ticker()
                _rewrite(
                    record,
                    logging.WARNING,
                    f"lost the connection to {service.label}: {_one_line(message)} "
                    f"(similar messages are summarised every {self._summary_every_s:g} s "
                    "until it is back)",
                )
                return True
            if lost:
                outage.last_failure = now
            if record.levelno < logging.WARNING:
                # Once per template and outage: retries repeat theirs, a rejoin's are new.
                template = f"{record.name}:{record.msg}"
                if template in outage.templates:
                    outage.suppressed += 1
                    outage.total += 1
                    return False
                outage.templates.add(template)
                return True
            outage.suppressed += 1
            outage.total += 1
            if now - outage.last_summary < self._summary_every_s:
                return False
            _rewrite(
                record,
                logging.WARNING,
                f"still unable to reach {service.label} after {now - outage.began:.0f} s; "
                f"{outage.suppressed} similar messages suppressed in the last "
                f"{now - outage.last_summary:.0f} s",
            )
            outage.last_summary = now
            outage.suppressed = 0
            return True

    def _over(self, service: Service, record: logging.LogRecord, message: str) -> bool:
        # Our own code knows the service is back (a query succeeded): end the outage now,
        # on its line, rather than after the quiet period.
        with self._lock:
            outage = self._open.pop(service.key, None)
        if outage is not None:
            _rewrite(
                record,
                record.levelno,
                f"{message} ({outage.total} similar messages suppressed)",
            )
        return True

    def tick(self) -> None:
        """End each outage whose service has been quiet for `quiet_after_s`, in one line."""
        now = self._clock()
        ended: list[str] = []
        with self._lock:
            for service in self._services:
                outage = self._open.get(service.key)
                if outage is None or now - outage.last_failure < self._quiet_after_s:
                    continue
                del self._open[service.key]
                ended.append(
                    f"{service.label} is reachable again: no failure for "
                    f"{now - outage.last_failure:.0f} s; the outage lasted "
                    f"{outage.last_failure - outage.began:.1f} s (first to last failure), "
                    f"{outage.total} similar messages suppressed"
                )
        for text in ended:  # outside the lock: the emitted record comes through filter()
            self._emit(text)

    def open_outages(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def _service_of(self, record: logging.LogRecord) -> Service | None:
        marked = {getattr(record, "outage", None), getattr(record, "outage_over", None)}
        for service in self._services:
            if service.key in marked or service.owns(record.name):
                return service
        return None

    def _start_ticker(self) -> None:
        if not self._ticker or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._tick_while_open, daemon=True)
        self._thread.start()

    def _tick_while_open(self) -> None:
        while True:
            time.sleep(TICK_S)
            self.tick()
            with self._lock:
                if not self._open:
                    self._thread = None
                    return


def _rewrite(record: logging.LogRecord, level: int, text: str) -> None:
    record.levelno = level
    record.levelname = logging.getLevelName(level)
    record.msg = text
    record.args = None
    # A connection loss's traceback says nothing the message does not, in thirty lines.
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None


def _one_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def setup_logging(
    process: str,
    level: str | int = "INFO",
    *,
    kafka_bootstrap: str | None = None,
    database: str | None = "PostgreSQL",
) -> OutageFilter:
    """The root logger of `process`: one stderr handler, Baton's format, `level`, and the
    outage filter for Kafka (when `kafka_bootstrap` is given) and PostgreSQL. Idempotent
    enough for tests: existing root handlers are replaced."""
    services = []
    if kafka_bootstrap is not None:
        services.append(kafka(kafka_bootstrap))
    if database is not None:
        services.append(postgres(database))
    outage_filter = OutageFilter(services)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT.format(process=process)))
    handler.addFilter(outage_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return outage_filter
