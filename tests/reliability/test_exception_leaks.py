"""Nothing keeps a failed item's exception alive (scenario 8)."""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING

import anyio
import pytest

from workpool import RetryPolicy, Scope, StopToken, WorkerPool, WorkItem

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """A failure that can be watched with a weak reference."""


@pytest.fixture
def gc_disabled() -> Iterator[None]:
    """Run the test with the cyclic garbage collector off: only reference counts free."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.usefixtures("gc_disabled")
async def test_failed_items_leave_no_exception_alive(
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """10,000 failing items (some retried), gc off: every exception is freed by refcount."""
    refs: list[weakref.ref[BaseException]] = []
    retry = RetryPolicy.exponential(2, initial=0.0)

    def watched(error: Boom) -> Boom:
        # Not a local of the failing frame: that would be a cycle of the test's own
        # (exception -> traceback -> frame -> local), not the pool's.
        refs.append(weakref.ref(error))
        return error

    async def fail(scope: Scope, stopping: StopToken) -> None:
        raise watched(Boom(f"item failed on attempt {scope.attempt}"))

    def sync_fail(scope: Scope, stopping: StopToken) -> None:
        raise watched(Boom("sync item failed"))

    async def timed_out(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(10)

    dead: list[WorkItem] = []

    def on_dead_letter(item: WorkItem, exc: BaseException) -> None:
        dead.append(item)
        if not isinstance(exc, Boom):
            refs.append(weakref.ref(exc))

    pool = WorkerPool(consumers=8, capacity=200, on_dead_letter=on_dead_letter)
    with anyio.fail_after(60):
        async with pool:
            for index in range(10_000):
                if index % 500 == 0:
                    await pool.enqueue(sync_fail)
                elif index % 500 == 1:
                    await pool.enqueue(timed_out, timeout=0.001, retry=retry)
                elif index % 4 == 0:
                    await pool.enqueue(fail, retry=retry)
                else:
                    await pool.enqueue(fail)
    assert len(dead) == 10_000
    assert pool.stats().failed == 10_000
    assert workpool_logs.records  # log capture keeps the records: that must not matter
    assert len(refs) > 10_000
    alive = [ref() for ref in refs if ref() is not None]
    assert not alive, f"{len(alive)} exceptions still alive, e.g. {alive[0]!r}"
