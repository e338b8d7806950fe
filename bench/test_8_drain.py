"""Scenario 8: drain of 10,000 queued no-op items, 4 consumers.

The queue is filled outside the timed part; the round is what it takes from there
until every item has run and the consumers have stopped. workpool: items enqueued
before the pool starts, then ``async with pool: pass`` (start, then shutdown drains
them). aiojobs: four jobs hold its four slots until the round starts, so the 10,000
stay pending. The asyncio.Queue and anyio stream loops start their consumers on a
full queue; Starlette runs its 10,000 tasks. taskiq sits this one out: it has no
queue to fill, every ``kiq()`` starts its task at once (its cost is in scenario 1).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiojobs
import anyio
import pytest
from starlette.background import BackgroundTasks

from _peers import noop_job, noop_work
from _support import CONSUMERS, ITEMS, run_case
from workpool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

GROUP = "8 drain of 10,000 queued items"


async def workpool_filled() -> Callable[[], Awaitable[Any]]:
    pool = WorkerPool(consumers=CONSUMERS, capacity=ITEMS)
    for _ in range(ITEMS):
        pool.enqueue_nowait(noop_work)

    async def drain() -> None:
        async with pool:
            pass
        assert pool.report is not None
        assert pool.report.succeeded == ITEMS

    return drain


async def aiojobs_filled() -> Callable[[], Awaitable[Any]]:
    scheduler = aiojobs.Scheduler(limit=CONSUMERS, pending_limit=ITEMS, wait_timeout=None)
    gate = asyncio.Event()
    for _ in range(CONSUMERS):
        await scheduler.spawn(gate.wait())
    for _ in range(ITEMS):
        await scheduler.spawn(noop_job())

    async def drain() -> None:
        gate.set()
        await scheduler.wait_and_close()

    return drain


async def starlette_filled() -> Callable[[], Awaitable[Any]]:
    tasks = BackgroundTasks()
    for _ in range(ITEMS):
        tasks.add_task(noop_job)
    return tasks


async def asyncio_queue_filled() -> Callable[[], Awaitable[Any]]:
    queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue(ITEMS)
    for _ in range(ITEMS):
        queue.put_nowait(noop_job)

    async def worker() -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            finally:
                queue.task_done()

    async def drain() -> None:
        workers = [asyncio.create_task(worker()) for _ in range(CONSUMERS)]
        await queue.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    return drain


async def anyio_stream_filled() -> Callable[[], Awaitable[Any]]:
    send, receive = anyio.create_memory_object_stream[Any](ITEMS)
    for _ in range(ITEMS):
        send.send_nowait(noop_job)
    send.close()

    async def consume(stream: Any) -> None:
        async with stream:
            while True:
                try:
                    job = stream.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        job = await stream.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                await job()

    async def drain() -> None:
        async with anyio.create_task_group() as task_group:
            for _ in range(CONSUMERS):
                task_group.start_soon(consume, receive.clone())
            receive.close()

    return drain


CASES: dict[str, Callable[[], Awaitable[Callable[[], Awaitable[Any]]]]] = {
    "workpool": workpool_filled,
    "aiojobs": aiojobs_filled,
    "starlette": starlette_filled,
    "asyncio.Queue": asyncio_queue_filled,
    "anyio stream (floor)": anyio_stream_filled,
}


@pytest.mark.parametrize("label", list(CASES))
def test_drain(benchmark: BenchmarkFixture, portal: BlockingPortal, label: str) -> None:
    """Drain 10,000 queued no-op items through 4 consumers."""
    run_case(benchmark, portal, CASES[label], group=GROUP, label=label, items=ITEMS)
