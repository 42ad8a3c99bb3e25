"""Time in the domain: UTC microseconds, given to every rule as `now`."""

from __future__ import annotations

MICROS = 1_000_000
