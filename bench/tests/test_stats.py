"""Percentiles, summaries and rates: the arithmetic every figure of the bench rests on."""

from __future__ import annotations

import pytest

from carebridge_bench.stats import percentile, steady_rate, summarise_ms


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 40) == pytest.approx(29.0)  # rank 1.6 between 20 and 35
    assert percentile(list(reversed(values)), 40) == pytest.approx(29.0)  # order does not matter
    assert percentile([7.0], 99) == 7.0


def test_percentile_refuses_what_has_no_answer() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_is_in_milliseconds() -> None:
    summary = summarise_ms([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert summary is not None
    assert (summary.count, summary.max) == (100, pytest.approx(100.0))
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p99 == pytest.approx(99.01)
    assert summary.mean == pytest.approx(50.5)
    assert summary.as_dict()["p95"] == pytest.approx(95.05)
    assert summarise_ms([]) is None


def test_steady_rate_counts_intervals_between_first_and_last() -> None:
    assert steady_rate([10.0, 10.5, 11.0, 12.0]) == pytest.approx(1.5)  # 3 intervals in 2 s
    assert steady_rate([3.0, 1.0, 2.0]) == pytest.approx(1.0)
    assert steady_rate([1.0]) is None
    assert steady_rate([2.0, 2.0]) is None
