"""Scenario 6: memory per queued item, 100,000 no-op items waiting to run.

Each row fills an idle queue with 100,000 items (the same function every time, so
only the queue's own cost per item counts) and measures, once, with ``tracemalloc``,
what the filled queue holds beyond the empty one. The timed rounds are the fill
without tracing: the cost of an enqueue that never waits.

What "queued" is differs: workpool holds a `WorkItem` per item (enqueued before the
pool starts); aiojobs a pending ``Job`` and its coroutine; taskiq a started task per
``kiq()``; Starlette a ``BackgroundTask``; the asyncio.Queue and the anyio stream only
a reference to the job.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import TYPE_CHECKING, Any

import aiojobs
import anyio
import pytest
from starlette.background import BackgroundTasks

from _peers import noop_job, noop_work, taskiq_broker
from _support import run_case
from workpool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

GROUP = "6 memory per queued item"
ITEMS = 100_000

Fill = tuple["Callable[[], Awaitable[Any]]", "Callable[[], Awaitable[Any]]"]


async def _nothing() -> None:
    pass


async def fill_workpool() -> Fill:
    pool = WorkerPool(consumers=4, capacity=ITEMS)

    async def fill() -> None:
        enqueue_nowait = pool.enqueue_nowait
        for _ in range(ITEMS):
            enqueue_nowait(noop_work)

    async def cleanup() -> None:
        # The items never run: report them abandoned, as a pool that never started
        # must be (else it warns, rightly, when it is garbage-collected).
        await pool.shutdown()

    return fill, cleanup


async def fill_aiojobs() -> Fill:
    scheduler = aiojobs.Scheduler(limit=4, pending_limit=ITEMS)

    async def fill() -> None:
        spawn = scheduler.spawn
        for _ in range(ITEMS):
            await spawn(noop_job())

    # close() cancels pending jobs one task at a time (minutes for 100,000): run them.
    return fill, scheduler.wait_and_close


async def fill_taskiq() -> Fill:
    broker, task = taskiq_broker(noop_job)
    await broker.startup()

    async def fill() -> None:
        kiq = task.kiq
        for _ in range(ITEMS):
            await kiq()

    async def cleanup() -> None:
        tasks = list(broker._running_tasks)
        for running in tasks:
            running.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.shutdown()

    return fill, cleanup


async def fill_starlette() -> Fill:
    tasks = BackgroundTasks()

    async def fill() -> None:
        add_task = tasks.add_task
        for _ in range(ITEMS):
            add_task(noop_job)

    return fill, _nothing


async def fill_asyncio_queue() -> Fill:
    queue: asyncio.Queue[Any] = asyncio.Queue(ITEMS)

    async def fill() -> None:
        put_nowait = queue.put_nowait
        for _ in range(ITEMS):
            put_nowait(noop_job)

    return fill, _nothing


async def fill_anyio_stream() -> Fill:
    send, receive = anyio.create_memory_object_stream[Any](ITEMS)

    async def fill() -> None:
        send_nowait = send.send_nowait
        for _ in range(ITEMS):
            send_nowait(noop_job)

    async def cleanup() -> None:
        send.close()
        receive.close()

    return fill, cleanup


CASES: dict[str, Callable[[], Awaitable[Fill]]] = {
    "workpool": fill_workpool,
    "aiojobs": fill_aiojobs,
    "taskiq": fill_taskiq,
    "starlette": fill_starlette,
    "asyncio.Queue": fill_asyncio_queue,
    "anyio stream (floor)": fill_anyio_stream,
}

#: rounds for the peers whose round and cleanup take seconds (the rest: 1 s of rounds)
ROUNDS = {"aiojobs": 1, "taskiq": 1}


async def bytes_per_item(make: Callable[[], Awaitable[Fill]]) -> float:
    """Bytes the filled queue holds per item, beyond the empty queue."""
    fill, cleanup = await make()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        await cleanup()
    return (after - before) / ITEMS


@pytest.mark.parametrize("label", list(CASES))
def test_memory(benchmark: BenchmarkFixture, portal: BlockingPortal, label: str) -> None:
    """100,000 queued no-op items: bytes per item, and the time to queue them."""
    make = CASES[label]
    per_item = portal.call(bytes_per_item, make)
    run_case(
        benchmark,
        portal,
        make,
        group=GROUP,
        label=label,
        items=ITEMS,
        budget=1.0,
        rounds=ROUNDS.get(label),
        bytes_per_item=per_item,
    )
