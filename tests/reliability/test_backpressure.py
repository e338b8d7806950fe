"""Backpressure: a full channel holds producers back, and memory stays flat (scenario 7)."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import anyio
import pytest

from workpool import Scope, StopToken, WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio


async def test_a_slow_consumer_bounds_the_queue_and_memory(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """10,000 items into capacity 100 with one slow consumer: the queue never holds more than
    100, and memory does not grow with the number of items that went through."""
    pool = WorkerPool(consumers=1, capacity=100)
    worker = pool.worker
    deepest = 0
    done = 0

    async def slow(scope: Scope, stopping: StopToken) -> None:
        nonlocal deepest, done
        deepest = max(deepest, worker.qsize())
        done += 1
        await anyio.sleep(0)

    async def produce(count: int) -> None:
        nonlocal deepest
        for _ in range(count):
            await pool.enqueue(slow)
            deepest = max(deepest, worker.qsize())

    tracemalloc.start()
    try:
        with anyio.fail_after(60):
            async with pool:
                await produce(1_000)  # warm up: caches, the stats ring's first samples
                await pool.join()
                tracemalloc.reset_peak()
                before, _ = tracemalloc.get_traced_memory()
                await produce(9_000)
                await pool.join()
                _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done == 10_000
    assert deepest == 100
    # 9,000 items kept alive would take megabytes; the channel's 100, and the stats'
    # bounded ring of timings, take a few hundred kilobytes.
    assert peak - before < 512 * 1024, f"peak grew by {(peak - before) / 1024:.0f} KiB"
    assert_accounted(pool)
