"""Example python step functions: ``{"type": "python", "function": "examples.steps:add"}``.

A python step's params arrive as keyword arguments; it returns a dict (its outputs) or None.
Steps run at least once, so each of these is safe to re-run.
"""

from __future__ import annotations

import os
import time
from typing import Any


def add(a: float, b: float) -> dict[str, Any]:
    return {"sum": a + b}


def greet(name: str = "world") -> dict[str, Any]:
    print(f"greeting {name}")
    return {"greeting": f"hello, {name}"}


def flaky(fail_times: int = 1, message: str = "transient failure") -> dict[str, Any]:
    """Fails on attempts 1..fail_times, then succeeds: exercises retry policies.

    Decided by the attempt number (``BATON_ATTEMPT``), not by hidden state, so a re-run of
    the same attempt behaves the same way.
    """
    attempt = int(os.environ.get("BATON_ATTEMPT", "1"))
    if attempt <= fail_times:
        raise RuntimeError(f"{message} (attempt {attempt} of {fail_times} failing)")
    return {"attempt": attempt}


def fail(message: str = "step failed on purpose") -> None:
    raise ValueError(message)


def slow(seconds: float = 1.0) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


def not_an_object() -> list[int]:
    """Returns a list: the worker reports a USER failure (outputs must be a JSON object)."""
    return [1, 2, 3]


def load_partition(partition: str, rows: int, day: str = "") -> dict[str, Any]:
    """The load half of examples/etl_partitions.yaml (idempotent: it only reports)."""
    print(f"loading {rows} rows of {partition} for {day}")
    return {"loaded": rows, "partition": partition}


def train_epoch(epoch: int, learning_rate: float = 0.5) -> dict[str, Any]:
    """One epoch of examples/ml_training.yaml: the weights move deterministically."""
    return {"weights": round((1 - learning_rate) ** epoch, 6), "epoch": epoch}


def evaluate(weights: float) -> dict[str, Any]:
    return {"loss": weights}
