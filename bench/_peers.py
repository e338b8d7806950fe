"""workpool and its peers, each used the way its documentation shows.

Every runner takes the items of one round (already built, outside the timed part),
pushes them through, and returns once every item has run: build, start, push, wait,
stop, all inside the round. A *job* is a zero-argument async callable (what the
peers take); workpool takes work functions of ``(scope, stopping)``.

- workpool: ``async with WorkerPool(consumers, capacity) as pool: await pool.enqueue(w)``;
  leaving the block drains. Every item gets the full lifecycle: its session, a
  scope per attempt, ``current_scope()``, a context of its own, stats and timings.
- aiojobs: ``Scheduler(limit=consumers, pending_limit=capacity)``, ``await
  scheduler.spawn(job())``, ``await scheduler.wait_and_close()`` (a task per job).
- taskiq: ``InMemoryBroker()``, ``broker.register_task(fn)``, ``await task.kiq()``,
  ``await broker.wait_all()``. It has no queue and no consumer limit: every
  ``kiq()`` starts a task at once.
- Starlette: ``BackgroundTasks.add_task(job)`` then ``await tasks()``, which runs
  them one after the other (after the response, in a real app).
- asyncio.Queue: the worker loop of the asyncio documentation, ``consumers`` tasks
  doing ``get()``, run, ``task_done()``; the producer ``await queue.put()``, then
  ``await queue.join()``.
- anyio memory stream (the floor): items through ``send_nowait`` /
  ``receive_nowait`` with the waiting calls only when those would block, and
  nothing else: no scope, no session, no stats, no error handling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiojobs
import anyio
from starlette.background import BackgroundTasks
from taskiq import InMemoryBroker
from tenacity import AsyncRetrying, stop_after_attempt

from workpool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from taskiq.abc.middleware import TaskiqMiddleware

    from workpool import Work

logger = logging.getLogger("bench")

#: the attempts of every retry policy in the suites (tenacity's and workpool's default)
ATTEMPTS = 3


async def call_with_retries(job: Callable[[], Awaitable[Any]], attempts: int = ATTEMPTS) -> None:
    """The retry loop one writes by hand: up to *attempts* calls, no wait between."""
    for attempt in range(1, attempts + 1):
        try:
            await job()
        except Exception:
            if attempt == attempts:
                raise
        else:
            return


async def call_with_tenacity(job: Callable[[], Awaitable[Any]]) -> None:
    """tenacity's documented async loop, one ``AsyncRetrying`` per call."""
    async for attempt in AsyncRetrying(stop=stop_after_attempt(ATTEMPTS), reraise=True):
        with attempt:
            await job()


# -- workpool --------------------------------------------------------------------------


async def run_workpool(
    works: Sequence[Work], *, consumers: int, capacity: int, **pool_options: Any
) -> WorkerPool:
    async with WorkerPool(consumers=consumers, capacity=capacity, **pool_options) as pool:
        enqueue = pool.enqueue
        for work in works:
            await enqueue(work)
    report = pool.report
    assert report is not None
    assert report.succeeded == len(works), report
    return pool


# -- aiojobs ---------------------------------------------------------------------------


async def run_aiojobs(
    jobs: Sequence[Callable[[], Awaitable[Any]]],
    *,
    consumers: int,
    capacity: int,
    tenacity: bool = False,
) -> None:
    scheduler = aiojobs.Scheduler(limit=consumers, pending_limit=capacity, wait_timeout=None)
    spawn = scheduler.spawn
    if tenacity:
        for job in jobs:
            await spawn(call_with_tenacity(job))
    else:
        for job in jobs:
            await spawn(job())
    await scheduler.wait_and_close()


# -- taskiq ----------------------------------------------------------------------------


def taskiq_broker(
    func: Callable[..., Any],
    *,
    middlewares: Sequence[TaskiqMiddleware] = (),
    sync_tasks_pool_size: int = 4,
    **labels: Any,
) -> tuple[InMemoryBroker, Any]:
    """An ``InMemoryBroker`` with *func* registered as its task."""
    broker = InMemoryBroker(sync_tasks_pool_size=sync_tasks_pool_size)
    if middlewares:
        broker = broker.with_middlewares(*middlewares)
    task = broker.register_task(func, task_name=f"bench.{func.__name__}", **labels)
    return broker, task


async def taskiq_wait(broker: InMemoryBroker) -> None:
    """``wait_all()`` until no task is left (a retry kicks a new task)."""
    await broker.wait_all()
    # A retry is kicked from the failed task, and tasks leave the set in a done
    # callback: wait until the set stays empty.
    while broker._running_tasks:
        await asyncio.wait(list(broker._running_tasks))


async def run_taskiq(
    args: Sequence[tuple[Any, ...]],
    func: Callable[..., Any],
    *,
    middlewares: Sequence[TaskiqMiddleware] = (),
    sync_tasks_pool_size: int = 4,
    **labels: Any,
) -> None:
    broker, task = taskiq_broker(
        func, middlewares=middlewares, sync_tasks_pool_size=sync_tasks_pool_size, **labels
    )
    await broker.startup()
    kiq = task.kiq
    for item_args in args:
        await kiq(*item_args)
    await taskiq_wait(broker)
    await broker.shutdown()


# -- Starlette -------------------------------------------------------------------------


async def run_starlette(jobs: Sequence[Callable[..., Any]], *args: Any) -> None:
    tasks = BackgroundTasks()
    for job in jobs:
        tasks.add_task(job, *args)
    await tasks()


# -- asyncio.Queue ---------------------------------------------------------------------


async def run_asyncio_queue(
    jobs: Sequence[Callable[[], Awaitable[Any]]],
    *,
    consumers: int,
    capacity: int,
    attempts: int = 1,
) -> None:
    queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue(capacity)

    async def worker() -> None:
        while True:
            job = await queue.get()
            try:
                if attempts == 1:
                    await job()
                else:
                    await call_with_retries(job, attempts)
            except Exception:
                logger.exception("job failed")
            finally:
                queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(consumers)]
    put = queue.put
    for job in jobs:
        await put(job)
    await queue.join()
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


# -- anyio memory stream: the floor ----------------------------------------------------


async def run_anyio_stream(
    jobs: Sequence[Callable[[], Awaitable[Any]]],
    *,
    consumers: int,
    capacity: int,
    attempts: int = 1,
) -> None:
    send, receive = anyio.create_memory_object_stream[Any](capacity)

    async def consume(stream: anyio.abc.ObjectReceiveStream[Any]) -> None:
        receive_nowait = stream.receive_nowait  # type: ignore[attr-defined]
        async with stream:
            while True:
                try:
                    job = receive_nowait()
                except anyio.WouldBlock:
                    try:
                        job = await stream.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                if attempts == 1:
                    await job()
                else:
                    await call_with_retries(job, attempts)

    async with anyio.create_task_group() as task_group:
        for _ in range(consumers):
            task_group.start_soon(consume, receive.clone())
        receive.close()
        async with send:
            send_nowait = send.send_nowait
            for job in jobs:
                try:
                    send_nowait(job)
                except anyio.WouldBlock:
                    await send.send(job)


# -- shared jobs -----------------------------------------------------------------------


async def noop_job() -> None:
    """A no-op job for the peers."""


async def noop_work(scope: Any, stopping: Any) -> None:
    """A no-op work function for workpool."""


class Flaked(Exception):
    """The one failure of a flaky item."""


async def flaky_job(seen: set[int], key: int) -> None:
    """Fails the first time it is called for *key*, then succeeds."""
    if key not in seen:
        seen.add(key)
        raise Flaked(key)


async def flaky_work(seen: set[int], key: int, scope: Any, stopping: Any) -> None:
    """`flaky_job` as a workpool work function."""
    if key not in seen:
        seen.add(key)
        raise Flaked(key)
