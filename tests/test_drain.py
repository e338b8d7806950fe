"""Shutdown: the drain, its deadline, the report, and leaving `async with`."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.helpers.accounting import assert_accounted
from workpool import (
    DrainReport,
    ItemState,
    PoolClosedError,
    Scope,
    StopToken,
    WorkerPool,
    WorkItem,
)


class Recorder:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.abandoned_calls: list[list[WorkItem]] = []

    def on_abandoned(self, items: list[WorkItem]) -> None:
        self.abandoned_calls.append(list(items))

    def quick(self, label: str) -> Any:
        async def run(scope: Scope, stopping: StopToken) -> None:
            await anyio.lowlevel.checkpoint()
            self.ran.append(label)

        return run


async def forever(scope: Scope, stopping: StopToken) -> None:
    await anyio.sleep_forever()


@pytest.mark.anyio
async def test_shutdown_runs_every_queued_item_before_the_deadline() -> None:
    """Shutdown lets consumers finish what is queued; nothing is cancelled or abandoned."""
    rec = Recorder()
    release = anyio.Event()
    entered = anyio.Event()

    async def blocker(scope: Scope, stopping: StopToken) -> None:
        entered.set()
        await release.wait()
        rec.ran.append("blocker")

    pool = WorkerPool(consumers=1, on_abandoned=rec.on_abandoned)
    with anyio.fail_after(5):
        async with pool:
            await pool.enqueue(blocker)
            for i in range(5):
                await pool.enqueue(rec.quick(str(i)))
            await entered.wait()
            reports: list[DrainReport] = []

            async def stop() -> None:
                reports.append(await pool.shutdown(deadline=5))

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop)
                await anyio.wait_all_tasks_blocked()
                assert pool.stopping.is_set()
                assert reports == []
                release.set()
    (report,) = reports
    assert rec.ran == ["blocker", "0", "1", "2", "3", "4"]
    assert not report.deadline_hit
    assert report.clean
    assert (report.succeeded, report.failed, report.cancelled, report.abandoned) == (6, 0, (), ())
    assert report.elapsed >= 0
    assert rec.abandoned_calls == []  # nothing to report
    assert pool.report is report
    assert not pool.running
    assert_accounted(pool)


@pytest.mark.anyio
async def test_the_deadline_cancels_in_flight_and_abandons_queued_items() -> None:
    """At the deadline, running items are CANCELLED, queued ones ABANDONED, and
    on_abandoned gets all of them in one call."""
    rec = Recorder()
    pool = WorkerPool(consumers=2, on_abandoned=rec.on_abandoned)
    with anyio.fail_after(5):
        async with pool:
            running = [await pool.enqueue(forever) for _ in range(2)]
            queued = [await pool.enqueue(rec.quick(str(i))) for i in range(3)]
            await anyio.wait_all_tasks_blocked()
            report = await pool.shutdown(deadline=0.05)
    assert report.deadline_hit
    assert set(report.cancelled) == set(running)
    assert list(report.abandoned) == queued
    assert all(item.state is ItemState.CANCELLED for item in running)
    assert all(item.state is ItemState.ABANDONED for item in queued)
    assert rec.ran == []
    (call,) = rec.abandoned_calls
    assert sorted(map(id, call)) == sorted(map(id, running + queued))
    stats = pool.stats()
    assert (stats.cancelled, stats.abandoned, stats.succeeded, stats.busy) == (2, 3, 0, 0)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_enqueue_after_shutdown_raises_pool_closed() -> None:
    """Once shutdown has begun, enqueue and enqueue_nowait raise PoolClosedError."""
    rec = Recorder()
    async with WorkerPool() as pool:
        pass
    with pytest.raises(PoolClosedError):
        await pool.enqueue(rec.quick("late"))
    with pytest.raises(PoolClosedError):
        pool.enqueue_nowait(rec.quick("late"))
    assert pool.stats().enqueued == 0
    assert_accounted(pool)


@pytest.mark.anyio
async def test_enqueue_during_the_drain_raises_pool_closed() -> None:
    """Work that tries to enqueue more while the pool drains gets PoolClosedError."""
    outcome: list[str] = []
    rec = Recorder()

    async def spawner(scope: Scope, stopping: StopToken) -> None:
        await stopping.wait()
        try:
            await pool.enqueue(rec.quick("child"))
        except PoolClosedError:
            outcome.append("closed")

    with anyio.fail_after(5):
        async with WorkerPool() as pool:
            await pool.enqueue(spawner)
    assert outcome == ["closed"]
    assert rec.ran == []
    assert_accounted(pool)


@pytest.mark.anyio
async def test_the_stop_token_is_set_when_shutdown_begins() -> None:
    """Work sees the StopToken set once shutdown begins, and can finish cleanly."""
    seen: list[bool] = []
    entered = anyio.Event()

    async def watcher(scope: Scope, stopping: StopToken) -> None:
        seen.append(stopping.is_set())
        entered.set()
        await stopping.wait()
        seen.append(stopping.is_set())

    with anyio.fail_after(5):
        async with WorkerPool() as pool:
            item = await pool.enqueue(watcher)
            await entered.wait()
            assert not pool.stopping.is_set()
    assert seen == [False, True]
    assert item.state is ItemState.SUCCEEDED
    assert pool.report is not None
    assert not pool.report.deadline_hit
    assert_accounted(pool)


@pytest.mark.anyio
async def test_shutdown_is_idempotent() -> None:
    """shutdown() twice returns the same report; so do concurrent callers."""
    rec = Recorder()
    release = anyio.Event()

    async def blocker(scope: Scope, stopping: StopToken) -> None:
        await release.wait()

    pool = WorkerPool(on_abandoned=rec.on_abandoned)
    reports: list[DrainReport] = []
    with anyio.fail_after(5):
        async with pool:
            await pool.enqueue(blocker)

            async def stop() -> None:
                reports.append(await pool.shutdown())

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(stop)
                await anyio.wait_all_tasks_blocked()
                assert reports == []
                release.set()
            reports.append(await pool.shutdown())
        reports.append(await pool.shutdown(deadline=0))
    assert len(reports) == 5
    assert all(report is reports[0] for report in reports)
    assert reports[0].succeeded == 1
    assert rec.abandoned_calls == []
    assert_accounted(pool)


class BodyError(Exception):
    pass


@pytest.mark.anyio
async def test_leaving_by_an_exception_drains_and_reraises_it_unchanged() -> None:
    """An exception in the body of `async with pool` still drains the queue, and
    propagates as itself (not wrapped in an ExceptionGroup)."""
    rec = Recorder()
    pool = WorkerPool(consumers=1)

    async def serve() -> None:
        async with pool:
            for i in range(3):
                await pool.enqueue(rec.quick(str(i)))
            raise BodyError("request failed")

    with anyio.fail_after(5), pytest.raises(BodyError) as info:
        await serve()
    assert type(info.value) is BodyError
    assert str(info.value) == "request failed"
    assert rec.ran == ["0", "1", "2"]
    assert pool.report is not None
    assert pool.report.clean
    assert_accounted(pool)


@pytest.mark.anyio
async def test_leaving_by_an_exception_is_bounded_by_the_deadline() -> None:
    """With stuck work, an exception in the body still leaves within the deadline."""
    pool = WorkerPool(consumers=1, shutdown_deadline=0.05)
    items: list[WorkItem] = []

    async def serve() -> None:
        async with pool:
            items.append(await pool.enqueue(forever))
            await anyio.wait_all_tasks_blocked()
            raise BodyError

    with anyio.fail_after(5), pytest.raises(BodyError):
        await serve()
    (stuck,) = items
    assert stuck.state is ItemState.CANCELLED
    assert pool.report is not None
    assert pool.report.deadline_hit
    assert_accounted(pool)


@pytest.mark.anyio
async def test_leaving_by_outer_cancellation_still_drains() -> None:
    """Cancelling a scope around `async with pool` drains the queue first, within
    the deadline, and the cancellation goes on as usual."""
    rec = Recorder()
    pool = WorkerPool(consumers=2, shutdown_deadline=0.2, on_abandoned=rec.on_abandoned)
    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            async with pool:
                stuck = await pool.enqueue(forever)
                for i in range(4):
                    await pool.enqueue(rec.quick(str(i)))
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
                await anyio.sleep_forever()
        assert outer.cancelled_caught
    report = pool.report
    assert report is not None
    assert sorted(rec.ran) == ["0", "1", "2", "3"]
    assert report.cancelled == (stuck,)
    assert report.abandoned == ()
    assert report.deadline_hit
    assert stuck.state is ItemState.CANCELLED
    assert rec.abandoned_calls == [[stuck]]
    assert_accounted(pool)


@pytest.mark.anyio
async def test_outer_cancellation_with_a_queue_that_drains_in_time() -> None:
    """Cancelled from outside with only quick work queued, the drain finishes clean."""
    rec = Recorder()
    release = anyio.Event()

    async def slowish(scope: Scope, stopping: StopToken) -> None:
        await release.wait()
        rec.ran.append("slowish")

    pool = WorkerPool(consumers=1, shutdown_deadline=5)
    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            async with pool:
                await pool.enqueue(slowish)
                await pool.enqueue(rec.quick("after"))
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
                release.set()
                await anyio.sleep_forever()
    assert rec.ran == ["slowish", "after"]
    assert pool.report is not None
    assert pool.report.clean
    assert_accounted(pool)


@pytest.mark.anyio
async def test_shutting_down_a_pool_that_never_started_abandons_its_queue() -> None:
    """A pool shut down before it ever ran reports its queued items as abandoned."""
    rec = Recorder()
    pool = WorkerPool(on_abandoned=rec.on_abandoned)
    items = [pool.enqueue_nowait(rec.quick(str(i))) for i in range(3)]
    with anyio.fail_after(5):
        report = await pool.shutdown()
    assert list(report.abandoned) == items
    assert report.cancelled == ()
    assert all(item.state is ItemState.ABANDONED for item in items)
    assert rec.abandoned_calls == [items]
    assert rec.ran == []
    with pytest.raises(RuntimeError):
        async with pool:
            pass
    assert_accounted(pool)


@pytest.mark.anyio
async def test_on_abandoned_errors_are_swallowed(workpool_logs: pytest.LogCaptureFixture) -> None:
    """An on_abandoned hook that raises is logged; shutdown still returns its report."""

    def hook(items: list[WorkItem]) -> None:
        raise RuntimeError("hook broke")

    pool = WorkerPool(consumers=1, on_abandoned=hook)
    with anyio.fail_after(5):
        async with pool:
            await pool.enqueue(forever)
            await anyio.wait_all_tasks_blocked()
            report = await pool.shutdown(deadline=0.01)
    assert len(report.cancelled) == 1
    assert any("hook broke" in (r.exc_text or "") for r in workpool_logs.records)


@pytest.mark.anyio
async def test_a_zero_deadline_cancels_at_once() -> None:
    """shutdown(deadline=0) cancels in-flight work without waiting for it."""
    pool = WorkerPool(consumers=1)
    with anyio.fail_after(5):
        async with pool:
            item = await pool.enqueue(forever)
            queued = await pool.enqueue(forever)
            await anyio.wait_all_tasks_blocked()
            report = await pool.shutdown(deadline=0)
    assert report.cancelled == (item,)
    assert report.abandoned == (queued,)
    assert_accounted(pool)
