"""HDR-style percentiles: every sample goes into an HdrHistogram (1 µs .. 1 h, 3 significant
digits), so p99 and max are read from the whole distribution, not from a sample of it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0)
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 3_600_000_000, 3


@dataclass(frozen=True)
class Summary:
    """Milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def histogram(values_ms: Iterable[float]) -> HdrHistogram:
    h = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)
    for v in values_ms:
        # Clock steps can make a sub-microsecond gap negative; it is recorded as 1 µs.
        h.record_value(min(_HIGHEST_US, max(_LOWEST_US, round(v * 1000))))
    return h


def summarize(values_ms: Iterable[float]) -> Summary | None:
    values = list(values_ms)
    if not values:
        return None
    h = histogram(values)
    return Summary(
        n=len(values),
        p50=h.get_value_at_percentile(50.0) / 1000,
        p90=h.get_value_at_percentile(90.0) / 1000,
        p99=h.get_value_at_percentile(99.0) / 1000,
        max=h.get_max_value() / 1000,
        mean=sum(values) / len(values),
    )


def percentile_curve(values_ms: Iterable[float]) -> tuple[list[float], list[float]]:
    """(percentile, latency ms) points of the HDR percentile distribution, for plotting."""
    h = histogram(values_ms)
    xs: list[float] = []
    ys: list[float] = []
    for item in h.get_percentile_iterator(5):
        if item.percentile_level_iterated_to >= 99.999:  # the tail to 100% is the max
            break
        xs.append(item.percentile_level_iterated_to)
        ys.append(item.value_iterated_to / 1000)
    xs.append(99.999)
    ys.append(h.get_max_value() / 1000)
    return xs, ys
