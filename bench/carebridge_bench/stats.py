"""Percentiles and rates: the few numbers every table of the benchmark is made of."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default, so figures can be checked by hand.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Latency of one stage, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarise_ms(seconds: Sequence[float]) -> Summary | None:
    """Summary in ms of durations given in seconds; None when there are none."""
    if not seconds:
        return None
    ms = [s * 1000.0 for s in seconds]
    return Summary(
        count=len(ms),
        p50=percentile(ms, 50),
        p95=percentile(ms, 95),
        p99=percentile(ms, 99),
        max=max(ms),
        mean=sum(ms) / len(ms),
    )


def steady_rate(timestamps: Sequence[float]) -> float | None:
    """Events per second between the first and the last of `timestamps` (seconds).

    n timestamps span n - 1 intervals; None when fewer than two or all at one instant.
    """
    if len(timestamps) < 2:
        return None
    span = max(timestamps) - min(timestamps)
    if span <= 0:
        return None
    return (len(timestamps) - 1) / span
