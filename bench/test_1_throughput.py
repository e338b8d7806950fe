"""Scenario 1: throughput of no-op async items, 4 consumers, capacity 1000.

1b repeats the aiojobs comparison at 100,000 items, a hundred times the channel's
capacity: whatever grows with the number of items (stats, timings, the
scheduler's bookkeeping) shows there and not at 10,000.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from _peers import (
    noop_job,
    noop_work,
    run_aiojobs,
    run_anyio_stream,
    run_asyncio_queue,
    run_starlette,
    run_taskiq,
    run_workpool,
)
from _support import CAPACITY, CONSUMERS, ITEMS, LARGE_ITEMS, run_case

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

GROUP = "1 no-op throughput"
LARGE_GROUP = "1b no-op throughput at 100k items"
SIZE = {"consumers": CONSUMERS, "capacity": CAPACITY}

#: label -> builds one round (outside the timed part)
CASES: dict[str, Callable[[], Any]] = {
    "workpool": lambda: partial(run_workpool, [noop_work] * ITEMS, **SIZE),
    "aiojobs": lambda: partial(run_aiojobs, [noop_job] * ITEMS, **SIZE),
    "taskiq": lambda: partial(run_taskiq, [()] * ITEMS, noop_job),
    "starlette": lambda: partial(run_starlette, [noop_job] * ITEMS),
    "asyncio.Queue": lambda: partial(run_asyncio_queue, [noop_job] * ITEMS, **SIZE),
    "anyio stream (floor)": lambda: partial(run_anyio_stream, [noop_job] * ITEMS, **SIZE),
}


@pytest.mark.parametrize("label", list(CASES))
def test_noop_throughput(benchmark: BenchmarkFixture, portal: BlockingPortal, label: str) -> None:
    """10,000 no-op items through 4 consumers."""
    run_case(benchmark, portal, CASES[label], group=GROUP, label=label, items=ITEMS)


#: 1b: the same through capacity 1000, 100,000 items a round
LARGE_CASES: dict[str, Callable[[], Any]] = {
    "workpool": lambda: partial(run_workpool, [noop_work] * LARGE_ITEMS, **SIZE),
    "aiojobs": lambda: partial(run_aiojobs, [noop_job] * LARGE_ITEMS, **SIZE),
    "anyio stream (floor)": lambda: partial(run_anyio_stream, [noop_job] * LARGE_ITEMS, **SIZE),
}


@pytest.mark.parametrize("label", list(LARGE_CASES))
def test_noop_throughput_100k(
    benchmark: BenchmarkFixture, portal: BlockingPortal, label: str
) -> None:
    """100,000 no-op items through 4 consumers and capacity 1000, 5 rounds or more."""
    run_case(
        benchmark,
        portal,
        LARGE_CASES[label],
        group=LARGE_GROUP,
        label=label,
        items=LARGE_ITEMS,
        budget=3.0,
        min_rounds=5,
    )
