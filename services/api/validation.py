"""Validating definitions off the event loop, a few at a time, within a deadline.

Parsing and validating a definition is pure CPU work of up to a few seconds (a 1 MB YAML
document: PyYAML's scanner is pure Python). On the event loop it would stop every other
request, `/health` and the handling of SIGTERM for that long, so it runs in a small pool of
threads of its own. A thread cannot be killed: a validation that passes its deadline answers
503 and its thread runs on to the end. That end is near because the work is bounded before
any deep walk — the byte limit, then `documents.load_text` (no YAML aliases, at most 64
levels and 100,000 values), then the canonical size before the graph and expression analysis
— and the pool's size bounds how many run at once, however many requests time out.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from services.domain.language.parse import parse_workflow_text
from services.domain.language.workflow import Workflow

# Two cores on the reference machine: one validating thread per core at most, the event loop
# keeps its share through the GIL's switch interval.
VALIDATION_THREADS = 2
# Measured on the 2-core machine: YAML at the 100,000-value bound takes 2.3-3.2 s to load (and
# be refused); 944 KB of YAML with 300 steps and 2,100 CEL params 0.6 s to validate alone,
# 3.2 s next to other validations. 20 s leaves room for a busy machine and a queue.
VALIDATION_DEADLINE_S = 20.0


class ValidationBusy(Exception):
    """The definition was not validated within the deadline (the API is busy)."""


class DefinitionValidator:
    """`parse_workflow_text` in a pool of `threads` threads. Owned by the API's composition
    root, which calls `close` at shutdown."""

    def __init__(
        self, threads: int = VALIDATION_THREADS, deadline_s: float = VALIDATION_DEADLINE_S
    ) -> None:
        self.deadline_s = deadline_s
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="baton-validate")

    async def parse(self, text: bytes) -> Workflow:
        """The validated definition, DefinitionError with every fault, or ValidationBusy
        after `deadline_s` (a queued validation is then dropped, a running one runs out)."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, parse_workflow_text, text)
        try:
            return await asyncio.wait_for(future, self.deadline_s)
        except TimeoutError:
            raise ValidationBusy(
                f"validating the definition took longer than {self.deadline_s:g}s"
            ) from None

    def close(self) -> None:
        """Drop queued validations; running ones finish in their threads (bounded, above)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
