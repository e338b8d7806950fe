"""`Timings`: what `stats()` reports about wait and run times stays right across the
folds that keep recording cheap, and the percentile window holds the recent samples."""

from __future__ import annotations

import statistics

import pytest

from workpool._stats import Timings


def test_totals_span_every_fold() -> None:
    timings = Timings(size=100, chunk=10)
    samples = [float(n % 37) / 7 for n in range(1_234)]
    for seconds in samples:
        timings.add(seconds)
    summary = timings.summary()
    assert summary.count == len(samples)
    assert summary.mean == pytest.approx(statistics.fmean(samples))
    assert summary.max == max(samples)


def test_percentiles_cover_the_most_recent_window() -> None:
    timings = Timings(size=100, chunk=10)
    for _ in range(1_000):
        timings.add(50.0)  # old samples: out of the window by the end
    for n in range(1, 101):
        timings.add(float(n))
    summary = timings.summary()
    assert (summary.p50, summary.p95, summary.p99) == (50.0, 95.0, 99.0)
    assert summary.max == 100.0


def test_the_hot_path_append_and_fold_match_add() -> None:
    """The item runner appends through the bound `append` and folds when `pending`
    reaches `chunk`; the result is the same as through `add`."""
    by_add, by_append = Timings(size=50, chunk=8), Timings(size=50, chunk=8)
    append, pending = by_append.append, by_append.pending
    for n in range(203):
        by_add.add(n / 3)
        append(n / 3)
        if len(pending) >= by_append.chunk:
            by_append.fold()
    assert by_add.summary() == by_append.summary()


def test_memory_is_bounded_by_the_window() -> None:
    timings = Timings(size=100, chunk=10)
    for n in range(10_000):
        timings.add(float(n))
    assert len(timings.pending) < timings.chunk
    assert timings.summary().p50 == 9_949.0  # of the last 100: 9,900 ... 9,999
    assert timings.summary().count == 10_000


def test_an_empty_or_unfolded_record() -> None:
    timings = Timings()
    assert timings.summary().count == 0
    timings.add(0.5)
    timings.fold()
    timings.fold()  # nothing pending: no change
    assert timings.summary().count == 1
    assert timings.summary().p99 == 0.5
