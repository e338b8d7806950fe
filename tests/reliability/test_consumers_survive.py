"""A consumer never dies of a work item, and leaving the pool always drains."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import anyio
import pytest

from workpool import BackgroundWorker, ItemState, Scope, StopToken, WorkerPool, WorkItem

if TYPE_CHECKING:
    from collections.abc import Callable

    from workpool import Channel

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_cancelled_error_of_the_works_own_does_not_kill_the_consumer(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """Work that awaits something cancelled (CancelledError, not a cancellation of the item)
    fails like any error; the consumer goes on with the next item."""

    async def await_cancelled_future(scope: Scope, stopping: StopToken) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    async def await_cancelled_task(scope: Scope, stopping: StopToken) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(60))
        await asyncio.sleep(0)
        task.cancel()
        await task

    dead: list[tuple[WorkItem, BaseException]] = []
    pool = WorkerPool(consumers=1, on_dead_letter=lambda item, exc: dead.append((item, exc)))
    with anyio.fail_after(10):
        async with pool:
            broken = [
                await pool.enqueue(await_cancelled_future),
                await pool.enqueue(await_cancelled_task),
            ]
            after = [await pool.enqueue(noop) for _ in range(3)]
            await pool.join()
            assert pool.stats().busy == 0
            late = await pool.enqueue(noop)
    assert [item.state for item in after] == [ItemState.SUCCEEDED] * 3
    assert late.state is ItemState.SUCCEEDED
    assert [item.state for item in broken] == [ItemState.FAILED] * 2
    assert [item for item, _ in dead] == broken
    assert all(isinstance(exc, asyncio.CancelledError) for _, exc in dead)
    assert_accounted(pool)


async def test_an_outer_cancellation_still_drains(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """Cancelling the task around 'async with pool' still runs every queued item."""
    started = anyio.Event()

    async def short(scope: Scope, stopping: StopToken) -> None:
        started.set()
        await anyio.sleep(0.001)

    pool = WorkerPool(consumers=2, shutdown_deadline=10)
    with anyio.fail_after(10):
        with anyio.CancelScope() as outer:
            async with pool:
                items = [await pool.enqueue(short) for _ in range(50)]
                await started.wait()
                outer.cancel()
                await anyio.sleep(60)
        assert outer.cancelled_caught
    assert [item.state for item in items] == [ItemState.SUCCEEDED] * 50
    report = pool.report
    assert report is not None
    assert report.clean
    assert_accounted(pool)


class _BrokenChannel:
    """A channel with a bug: taking an item raises."""

    def __init__(self) -> None:
        self._inner = BackgroundWorker()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def dequeue_nowait(self) -> WorkItem:
        raise RuntimeError("channel bug")

    async def dequeue(self) -> WorkItem:
        raise RuntimeError("channel bug")

    # The pool consumes through the channel seam (claim/settle).
    claim_nowait = dequeue_nowait
    claim = dequeue


async def test_a_bug_in_the_pools_own_machinery_fails_the_body_at_once() -> None:
    """A crash that is not a work item's (here, a broken channel) is not swallowed: it
    cancels the body of 'async with pool' and is raised from it."""
    pool = WorkerPool(consumers=2, worker=cast("Channel", _BrokenChannel()))
    body_cancelled = False
    with anyio.fail_after(20), pytest.raises(ExceptionGroup) as raised:  # noqa: PT012
        async with pool:
            await pool.enqueue(noop)
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                body_cancelled = True
                raise
    assert body_cancelled
    errors = raised.value.split(RuntimeError)[0]
    assert errors is not None
    assert {str(error) for error in _leaves(errors)} == {"channel bug"}


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for error in group.exceptions:
        out.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return out


@pytest.mark.parametrize("anyio_backend", ["trio"])  # asyncio lets it escape the loop itself
async def test_system_exit_from_work_propagates_out_of_the_pool() -> None:
    """A work item calling sys.exit() is not swallowed: SystemExit leaves 'async with pool'
    (not a TrioInternalError from the consumers' detached task)."""

    async def exits(scope: Scope, stopping: StopToken) -> None:
        raise SystemExit(3)

    with anyio.fail_after(10), pytest.raises(BaseExceptionGroup) as raised:  # noqa: PT012
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(exits)
            await anyio.sleep(10)
    exits_ = raised.value.split(SystemExit)[0]
    assert exits_ is not None
    assert [error.args for error in _leaves(exits_)] == [(3,)]
