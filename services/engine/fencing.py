"""Fencing as the engine meets it: telling a fenced transaction from other failures, and
keeping asyncio quiet about the futures a fenced producer leaves behind."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)

# The engine's own logger: these lines were the engine's before they moved here, and
# operators' filters know them by that name.
log = logging.getLogger("services.engine.engine")

_FENCED = (ProducerFenced, InvalidProducerEpoch, InvalidProducerIdMapping)


def is_fenced(err: BaseException) -> bool:
    """Whether a transaction failed because a newer producer took our transactional id."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, _FENCED):
            return True
        seen = seen.__cause__
    return False


def quiet_fenced_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Have `loop` drop asyncio's "Future exception was never retrieved" for futures failed by
    a fenced producer; every other report goes where it went before.

    The records of a fenced shard's transaction are consumed by the shard (see
    transaction._Deliveries), but aiokafka (0.14) fails two futures of its own that nothing
    awaits: the transaction's waiter and each unsent batch's drain waiter, gone with the batch
    before anyone could retrieve them. The engine logs the fencing once ("fenced or no longer
    ours"); without this, every rebalance that moves partitions away also logs a traceback
    per future."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        future = context.get("future")
        if (
            isinstance(future, asyncio.Future)
            and not isinstance(future, asyncio.Task)
            and isinstance(context.get("exception"), _FENCED)
        ):
            log.debug("a fenced producer's future failed unobserved: %s", context["exception"])
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
