"""Sync work in worker threads, and producers on plain threads (enqueue_threadsafe)."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

from tests.helpers.accounting import assert_accounted
from workpool import (
    FullMode,
    ItemState,
    PoolClosedError,
    QueueFullError,
    Scope,
    StopToken,
    Work,
    WorkerPool,
    WorkItem,
)


@pytest.mark.anyio
async def test_sync_work_runs_in_a_worker_thread() -> None:
    """A sync work function runs off the event loop's thread."""
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def work(scope: Scope, stopping: StopToken) -> None:
        threads.append(threading.get_ident())

    with anyio.fail_after(5):
        async with WorkerPool() as pool:
            item = await pool.enqueue(work)
            await pool.join()
    assert item.state is ItemState.SUCCEEDED
    assert not item.is_async
    assert threads
    assert loop_thread not in threads


@pytest.mark.anyio
async def test_thread_limit_bounds_sync_work() -> None:
    """No more sync items run at once than thread_limit, however many consumers."""
    lock = threading.Lock()
    release = threading.Event()
    active = 0
    most = 0

    def work(scope: Scope, stopping: StopToken) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            release.wait(5)
        finally:
            with lock:
                active -= 1

    with anyio.fail_after(5):
        async with WorkerPool(consumers=6, thread_limit=2) as pool:
            for _ in range(6):
                await pool.enqueue(work)
            while active < 2:
                await anyio.sleep(0.001)
            await anyio.wait_all_tasks_blocked()
            assert pool.stats().busy == 6  # every consumer holds an item
            with lock:
                assert active == 2
            release.set()
            await pool.join()
    assert most == 2
    assert pool.stats().succeeded == 6


@pytest.mark.anyio
async def test_a_sync_function_returning_a_coroutine_has_it_awaited() -> None:
    """A sync lambda that returns a coroutine (lambda scope, stopping: send(x)) runs it."""
    sent: list[tuple[str, bool]] = []

    async def send(order: str) -> None:
        await anyio.lowlevel.checkpoint()
        sent.append((order, threading.current_thread() is threading.main_thread()))

    with anyio.fail_after(5):
        async with WorkerPool() as pool:
            item = await pool.enqueue(lambda scope, stopping: send("A-1"))
            await pool.join()
    assert item.state is ItemState.SUCCEEDED
    assert sent == [("A-1", True)]


@pytest.mark.anyio
async def test_sync_work_sees_the_stop_token() -> None:
    """Sync work gets the pool's StopToken and can poll it from its thread."""
    seen: list[bool] = []
    entered = threading.Event()

    def work(scope: Scope, stopping: StopToken) -> None:
        entered.set()
        for _ in range(5000):
            if stopping.is_set():
                break
            threading.Event().wait(0.001)
        seen.append(stopping.is_set())

    with anyio.fail_after(10):
        async with WorkerPool() as pool:
            await pool.enqueue(work)
            await anyio.to_thread.run_sync(entered.wait, 5)
    assert seen == [True]
    assert pool.stats().succeeded == 1


# -- enqueue_threadsafe --------------------------------------------------------------


@pytest.mark.anyio
async def test_producers_on_plain_threads_get_all_their_items_run() -> None:
    """Several plain threads enqueue with enqueue_threadsafe; every item runs once."""
    ran: list[tuple[int, int]] = []
    returned: list[WorkItem] = []
    errors: list[BaseException] = []

    def make(producer: int, n: int) -> Work:
        async def work(scope: Scope, stopping: StopToken) -> None:
            ran.append((producer, n))

        return work

    def produce(producer: int) -> None:
        try:
            for n in range(50):
                returned.append(pool.enqueue_threadsafe(make(producer, n), name=f"p{producer}"))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    with anyio.fail_after(10):
        # a small capacity makes producers wait for room (WAIT mode) as they go
        async with WorkerPool(consumers=2, capacity=8) as pool:
            threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                await anyio.to_thread.run_sync(thread.join)
            await pool.join()
    assert errors == []
    assert sorted(ran) == [(p, n) for p in range(4) for n in range(50)]
    assert len(returned) == 200
    assert all(isinstance(item, WorkItem) for item in returned)
    assert all(item.state is ItemState.SUCCEEDED for item in returned)
    assert pool.stats().enqueued == 200
    assert_accounted(pool)


async def _noop(scope: Scope, stopping: StopToken) -> None:
    pass


@pytest.mark.anyio
async def test_enqueue_threadsafe_on_the_loop_thread_raises() -> None:
    """enqueue_threadsafe() on the event loop's own thread raises RuntimeError."""
    async with WorkerPool() as pool:
        with pytest.raises(RuntimeError, match="event loop"):
            pool.enqueue_threadsafe(_noop)
    assert pool.stats().enqueued == 0


@pytest.mark.anyio
async def test_enqueue_threadsafe_before_start_raises() -> None:
    """enqueue_threadsafe() before the pool runs raises RuntimeError."""
    pool = WorkerPool()
    with pytest.raises(RuntimeError, match="not running"):
        await anyio.to_thread.run_sync(pool.enqueue_threadsafe, _noop)


@pytest.mark.anyio
async def test_enqueue_threadsafe_after_shutdown_raises_pool_closed() -> None:
    """enqueue_threadsafe() once shut down raises PoolClosedError."""
    async with WorkerPool() as pool:
        pass
    with pytest.raises(PoolClosedError):
        await anyio.to_thread.run_sync(pool.enqueue_threadsafe, _noop)


@pytest.mark.anyio
async def test_enqueue_threadsafe_rejects_bad_work_at_once() -> None:
    """enqueue_threadsafe(None) raises TypeError in the calling thread."""
    async with WorkerPool() as pool:
        with pytest.raises(TypeError, match="work function"):
            await anyio.to_thread.run_sync(lambda: pool.enqueue_threadsafe(None))  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_enqueue_threadsafe_follows_the_full_mode() -> None:
    """From a thread, a full REJECT channel raises QueueFullError in that thread."""
    release = anyio.Event()

    async def blocker(scope: Scope, stopping: StopToken) -> None:
        await release.wait()

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, capacity=1, full_mode=FullMode.REJECT) as pool:
            await pool.enqueue(blocker)
            await anyio.wait_all_tasks_blocked()
            await pool.enqueue(blocker)
            with pytest.raises(QueueFullError):
                await anyio.to_thread.run_sync(pool.enqueue_threadsafe, _noop)
            release.set()
    assert pool.stats().rejected == 1


@pytest.mark.anyio
async def test_a_thread_stuck_at_the_deadline_does_not_hold_shutdown() -> None:
    """Sync work still running at the deadline is abandoned: the item is CANCELLED and
    shutdown returns without waiting for the thread."""
    entered = threading.Event()
    release = threading.Event()

    def stuck(scope: Scope, stopping: StopToken) -> None:
        entered.set()
        release.wait(10)

    pool = WorkerPool(consumers=1)
    try:
        with anyio.fail_after(5):
            async with pool:
                item = await pool.enqueue(stuck)
                await anyio.to_thread.run_sync(entered.wait, 5)
                report = await pool.shutdown(deadline=0.05)
    finally:
        release.set()
    assert report.cancelled == (item,)
    assert item.state is ItemState.CANCELLED
    assert report.deadline_hit
    assert_accounted(pool)
