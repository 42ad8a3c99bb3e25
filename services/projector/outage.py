"""How the projector tells a PostgreSQL outage: once when it begins, once when it ends.

The records carry ``extra={"outage": "postgres"}`` / ``{"outage_over": "postgres"}`` so that
`services.adapters.logs.OutageFilter` folds them into the outage of the database's own clients.
"""

from __future__ import annotations

import logging
import time

from services.adapters.postgres import retry_delay

# The projector loop's logger, as before this module was split from it.
log = logging.getLogger("services.projector.consumer")


class DatabaseOutage:
    """The current outage of one projector's database, if any, and its back-off."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._since: float | None = None
        self._retries = 0

    def failed(self, err: BaseException) -> float:
        """Note a failure (logged at WARNING when it begins an outage); returns the seconds
        to wait before the next try, doubling up to `postgres.RETRY_CAP_S`."""
        if self._since is None:
            self._since = time.monotonic()
            log.warning(
                "projector %s: PostgreSQL is unavailable (%s: %s); retrying with back-off",
                self._name,
                type(err).__name__,
                err,
                extra={"outage": "postgres"},  # the first of an outage (services.adapters.logs)
            )
        else:
            log.debug("projector %s: PostgreSQL still unavailable: %s", self._name, err)
        delay = retry_delay(self._retries)
        self._retries += 1
        return delay

    def over(self) -> None:
        """The database answered: end the outage, if there is one, with one line."""
        if self._since is None:
            return
        log.info(
            "projector %s: PostgreSQL is back after %.1f s (%d retries); resumed at the "
            "stored positions",
            self._name,
            time.monotonic() - self._since,
            self._retries,
            extra={"outage_over": "postgres"},
        )
        self._since = None
        self._retries = 0
