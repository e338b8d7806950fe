"""workpool from plain asyncio code (pytest-asyncio, strict mode): native tasks,
``asyncio.timeout`` and ``asyncio.wait_for`` around the pool's calls."""

from __future__ import annotations

import asyncio

import pytest

from workpool import FullMode, ItemState, Scope, StopToken, WorkerPool


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


@pytest.mark.asyncio
async def test_producers_in_native_tasks() -> None:
    """Items enqueued from several asyncio tasks all run."""
    pool = WorkerPool(consumers=3, capacity=10)
    async with pool:
        items = await asyncio.gather(*(asyncio.create_task(pool.enqueue(noop)) for _ in range(100)))
        await asyncio.wait_for(pool.join(), 5)
    assert {item.state for item in items} == {ItemState.SUCCEEDED}
    assert pool.stats().succeeded == 100


@pytest.mark.asyncio
async def test_wait_for_cancels_an_enqueue_waiting_for_room() -> None:
    """asyncio.wait_for cancels an enqueue that waits for room; nothing is accepted."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def blocker(scope: Scope, stopping: StopToken) -> None:
        started.set()
        await release.wait()

    pool = WorkerPool(consumers=1, capacity=1, full_mode=FullMode.WAIT, shutdown_deadline=5)
    async with pool:
        await pool.enqueue(blocker)
        await asyncio.wait_for(started.wait(), 5)  # the consumer has taken it
        await pool.enqueue(noop)  # fills the channel
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.enqueue(noop), 0.05)
        release.set()
    stats = pool.stats()
    assert stats.enqueued == 2
    assert stats.succeeded == 2


@pytest.mark.asyncio
async def test_asyncio_timeout_around_the_pool_still_drains() -> None:
    """An asyncio.timeout that fires inside ``async with pool`` still drains the
    queued items before the TimeoutError propagates."""
    ran: list[int] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        await asyncio.sleep(0.01)
        ran.append(1)

    pool = WorkerPool(consumers=2, shutdown_deadline=10)

    async def serve() -> None:
        async with asyncio.timeout(0.05), pool:
            for _ in range(20):
                await pool.enqueue(work)
            await asyncio.sleep(60)

    with pytest.raises(TimeoutError):
        await serve()
    assert len(ran) == 20
    report = pool.report
    assert report is not None
    assert report.succeeded == 20
    assert not report.cancelled
    assert not report.abandoned
