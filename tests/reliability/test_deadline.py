"""Shutdown is bounded by its deadline, whatever the work does (scenarios 2 and 5)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from workpool import ItemState, Scope, StopToken, WorkerPool, WorkItem

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


async def test_deadline_cancels_in_flight_and_abandons_queued(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """10 items sleeping 60 s and 200 queued, deadline 2 s: back within 2.5 s, all reported."""
    all_running = anyio.Event()
    running = 0
    reported: list[list[WorkItem]] = []

    async def sleeper(scope: Scope, stopping: StopToken) -> None:
        nonlocal running
        running += 1
        if running == 10:
            all_running.set()
        await anyio.sleep(60)

    pool = WorkerPool(
        consumers=10, capacity=500, shutdown_deadline=2.0, on_abandoned=reported.append
    )
    with anyio.fail_after(10):
        async with pool:
            sleepers = [await pool.enqueue(sleeper) for _ in range(10)]
            await all_running.wait()
            queued = [await pool.enqueue(noop) for _ in range(200)]
            began = time.monotonic()
        elapsed = time.monotonic() - began

    assert elapsed < 2.5
    report = pool.report
    assert report is not None
    assert report.deadline_hit
    assert set(report.cancelled) == set(sleepers)
    assert list(report.abandoned) == queued
    assert all(item.state is ItemState.CANCELLED for item in sleepers)
    assert all(item.state is ItemState.ABANDONED for item in queued)
    assert len(reported) == 1
    assert set(reported[0]) == {*sleepers, *queued}
    assert_accounted(pool)


@pytest.mark.parametrize("ending", ["reraise", "return", "raise"])
async def test_work_that_ignores_cancellation_cannot_hold_shutdown(
    ending: str,
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """Work that catches cancellation and keeps waiting: shutdown returns within the deadline
    plus a small grace, the item is reported as cancelled, and however it ends later it is
    not counted again."""
    release = anyio.Event()
    caught = anyio.Event()
    started = anyio.Event()
    unwound = anyio.Event()

    async def stubborn(scope: Scope, stopping: StopToken) -> None:
        try:
            started.set()
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            caught.set()
            with anyio.CancelScope(shield=True):
                await release.wait()
            if ending == "return":
                return
            if ending == "raise":
                raise RuntimeError("failed after all") from None
            raise
        finally:
            unwound.set()

    dead: list[WorkItem] = []
    deadline, grace = 0.2, 0.1
    pool = WorkerPool(
        consumers=2,
        shutdown_deadline=deadline,
        cleanup_grace=grace,
        on_dead_letter=lambda item, exc: dead.append(item),
    )
    try:
        with anyio.fail_after(10):
            async with pool:
                item = await pool.enqueue(stubborn, name="stubborn")
                done = await pool.enqueue(noop)
                await started.wait()
                began = time.monotonic()
            elapsed = time.monotonic() - began
        assert caught.is_set()
        assert elapsed < deadline + grace + 1.0
        report = pool.report
        assert report is not None
        assert report.cancelled == (item,)
        assert done.state is ItemState.SUCCEEDED
        assert item.state is ItemState.CANCELLED
        assert any(
            r.levelno >= logging.ERROR and "stubborn" in r.getMessage()
            for r in workpool_logs.records
        )
        assert_accounted(pool)
    finally:
        release.set()
    # The stuck work ends later: it stays reported as cancelled, counted once.
    with anyio.fail_after(5):
        await unwound.wait()
        await anyio.wait_all_tasks_blocked()
    assert item.state is ItemState.CANCELLED
    assert_accounted(pool)
    stats = pool.stats()
    assert (stats.succeeded, stats.failed, stats.cancelled, stats.busy) == (1, 0, 1, 0)
    assert dead == []
    if ending != "reraise":
        assert any(
            "after shutdown had given up on it" in r.getMessage() for r in workpool_logs.records
        )
