"""Scenario 4: sync items (``time.sleep(0.005)``) run in worker threads: 400 items, 40 at
once (workpool's default thread limiter of 40), against the ideal ``400 x 5 ms / 40``.

Each peer gets 40 threads: workpool and the anyio floor through anyio's thread pool
(``to_thread.run_sync``, a limiter of 40), aiojobs and the asyncio.Queue loop through
``loop.run_in_executor`` on a 40-thread executor, taskiq through its broker's own
executor (``sync_tasks_pool_size=40``). Starlette runs its tasks one at a time, each
in a thread. Thread pools are warm: every loop lives for the whole session.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import pytest

from _peers import (
    run_aiojobs,
    run_anyio_stream,
    run_asyncio_queue,
    run_starlette,
    run_workpool,
    taskiq_broker,
    taskiq_wait,
)
from _support import run_case

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

GROUP = "4 sync items in threads"
ITEMS = 400
THREADS = 40
DELAY = 0.005
SIZE = {"consumers": THREADS, "capacity": 1000}


def blocking() -> None:
    """A blocking call of 5 ms."""
    time.sleep(DELAY)


def sync_work(scope: Any, stopping: Any) -> None:
    """A sync work function: workpool runs it in a worker thread."""
    time.sleep(DELAY)


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    """The 40 threads of the asyncio peers."""
    with ThreadPoolExecutor(THREADS) as pool:
        yield pool


def _in_executor(executor: ThreadPoolExecutor) -> Callable[[], Any]:
    async def job() -> None:
        await asyncio.get_running_loop().run_in_executor(executor, blocking)

    return job


async def _in_anyio_thread() -> None:
    await anyio.to_thread.run_sync(blocking)


def _cases(executor: ThreadPoolExecutor) -> dict[str, Callable[[], Any]]:
    job = _in_executor(executor)
    return {
        "workpool": lambda: partial(run_workpool, [sync_work] * ITEMS, **SIZE),
        "aiojobs": lambda: partial(run_aiojobs, [job] * ITEMS, **SIZE),
        "starlette": lambda: partial(run_starlette, [blocking] * ITEMS),
        "asyncio.Queue": lambda: partial(run_asyncio_queue, [job] * ITEMS, **SIZE),
        "anyio stream (floor)": lambda: partial(
            run_anyio_stream, [_in_anyio_thread] * ITEMS, **SIZE
        ),
    }


LABELS = ["workpool", "aiojobs", "taskiq", "starlette", "asyncio.Queue", "anyio stream (floor)"]


@pytest.mark.parametrize("label", LABELS)
def test_sync_items(
    benchmark: BenchmarkFixture, portal: BlockingPortal, executor: ThreadPoolExecutor, label: str
) -> None:
    """400 blocking calls of 5 ms, 40 threads at a time."""
    extra = {"ideal": ITEMS * DELAY / THREADS}
    if label != "taskiq":
        run_case(
            benchmark,
            portal,
            _cases(executor)[label],
            group=GROUP,
            label=label,
            items=ITEMS,
            **extra,
        )
        return
    # One broker for every round, so that its executor's threads are warm too.
    broker, task = taskiq_broker(blocking, sync_tasks_pool_size=THREADS)
    portal.call(broker.startup)

    async def run() -> None:
        for _ in range(ITEMS):
            await task.kiq()
        await taskiq_wait(broker)

    try:
        run_case(benchmark, portal, lambda: run, group=GROUP, label=label, items=ITEMS, **extra)
    finally:
        portal.call(broker.shutdown)
