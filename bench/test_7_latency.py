"""Scenario 7: enqueue-to-start latency, p50 and p99, at half load.

4 consumers, items that wait 2 ms (so the pool serves up to 2,000 items/s), and one
item enqueued every millisecond on an even schedule (1,000 items/s: half load),
1,000 items a round. The latency of an item is from just before its enqueue call to
the first line of its work. The timed round is the whole run (about 1 s, set by the
schedule); the percentiles are over every item of every round.

taskiq starts a task per ``kiq()`` with no consumer limit, so its items never wait
for a consumer; Starlette's tasks run after the response, one after the other, and
sit this one out.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import aiojobs
import anyio
import pytest

from _peers import taskiq_broker, taskiq_wait
from _support import percentile, run_case
from workpool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

GROUP = "7 enqueue-to-start latency at half load"
ITEMS = 1000
CONSUMERS = 4
SERVICE = 0.002
INTERVAL = 0.001
ROUNDS = 3


async def paced(submit: Callable[[float], Awaitable[Any]]) -> None:
    """Call ``submit(now)`` ITEMS times, one every INTERVAL on an even schedule."""
    perf_counter = time.perf_counter
    start = perf_counter()
    for index in range(ITEMS):
        delay = start + index * INTERVAL - perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        await submit(perf_counter())


async def job(samples: list[float], enqueued: float) -> None:
    samples.append(time.perf_counter() - enqueued)
    await anyio.sleep(SERVICE)


async def work(samples: list[float], enqueued: float, scope: Any, stopping: Any) -> None:
    samples.append(time.perf_counter() - enqueued)
    await anyio.sleep(SERVICE)


async def run_workpool(samples: list[float]) -> None:
    async with WorkerPool(consumers=CONSUMERS) as pool:
        await paced(lambda now: pool.enqueue(partial(work, samples, now)))


async def run_aiojobs(samples: list[float]) -> None:
    scheduler = aiojobs.Scheduler(limit=CONSUMERS, pending_limit=1000, wait_timeout=None)
    await paced(lambda now: scheduler.spawn(job(samples, now)))
    await scheduler.wait_and_close()


_taskiq_samples: list[float] = []


async def taskiq_job(enqueued: float) -> None:
    await job(_taskiq_samples, enqueued)


async def run_taskiq(samples: list[float]) -> None:
    broker, task = taskiq_broker(taskiq_job)
    await broker.startup()
    _taskiq_samples.clear()
    await paced(task.kiq)
    await taskiq_wait(broker)
    await broker.shutdown()
    samples.extend(_taskiq_samples)


async def run_asyncio_queue(samples: list[float]) -> None:
    queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue(1000)

    async def worker() -> None:
        while True:
            item = await queue.get()
            try:
                await item()
            finally:
                queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(CONSUMERS)]
    await paced(lambda now: queue.put(partial(job, samples, now)))
    await queue.join()
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


async def run_anyio_stream(samples: list[float]) -> None:
    send, receive = anyio.create_memory_object_stream[Any](1000)

    async def consume(stream: Any) -> None:
        async with stream:
            while True:
                try:
                    item = stream.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        item = await stream.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                await item()

    async def submit(now: float) -> None:
        item = partial(job, samples, now)
        try:
            send.send_nowait(item)
        except anyio.WouldBlock:
            await send.send(item)

    async with anyio.create_task_group() as task_group:
        for _ in range(CONSUMERS):
            task_group.start_soon(consume, receive.clone())
        receive.close()
        async with send:
            await paced(submit)


CASES: dict[str, Callable[[list[float]], Awaitable[None]]] = {
    "workpool": run_workpool,
    "aiojobs": run_aiojobs,
    "taskiq": run_taskiq,
    "asyncio.Queue": run_asyncio_queue,
    "anyio stream (floor)": run_anyio_stream,
}


@pytest.mark.parametrize("label", list(CASES))
def test_latency(benchmark: BenchmarkFixture, portal: BlockingPortal, label: str) -> None:
    """Enqueue-to-start latency of items arriving at half the pool's capacity."""
    samples: list[float] = []
    run_case(
        benchmark,
        portal,
        lambda: partial(CASES[label], samples),
        group=GROUP,
        label=label,
        items=ITEMS,
        rounds=ROUNDS,
    )
    assert len(samples) == ROUNDS * ITEMS
    benchmark.extra_info.update(
        latency_p50=percentile(samples, 0.50),
        latency_p99=percentile(samples, 0.99),
        latency_max=max(samples),
    )
