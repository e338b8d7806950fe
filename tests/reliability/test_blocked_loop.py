"""Work that blocks the event loop is named in a warning (scenario 6)."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from workpool import ItemState, PoolSettings, Scope, StopToken, WorkerPool

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


class _Watch(logging.Handler):
    """Collects workpool's warnings about a blocked loop; an event set at the first one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.warned = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "event loop has been blocked" in record.getMessage():
            self.records.append(record)
            if record.levelno >= logging.WARNING:
                self.warned.set()


@pytest.fixture
def watch() -> Iterator[_Watch]:
    """Watch workpool's logger for reports of a blocked loop."""
    handler = _Watch()
    logger = logging.getLogger("workpool")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_a_blocking_async_item_is_named_and_later_items_still_run(watch: _Watch) -> None:
    """time.sleep-style blocking in async work: a warning names the item once the loop was
    blocked past the threshold, and the items after it still run."""

    async def blocks_the_loop(scope: Scope, stopping: StopToken) -> None:
        # Block the loop (as time.sleep would) until the watchdog has spoken.
        assert watch.warned.wait(10), "no warning while the loop was blocked"

    pool = WorkerPool(consumers=2, blocked_loop_threshold=0.05)
    with anyio.fail_after(20):
        async with pool:
            blocker = await pool.enqueue(blocks_the_loop, name="report-generator")
            later = [await pool.enqueue(noop) for _ in range(10)]
            await pool.join()
    assert blocker.state is ItemState.SUCCEEDED
    assert [item.state for item in later] == [ItemState.SUCCEEDED] * 10
    warnings = [r for r in watch.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per blockage, not once per check
    message = warnings[0].getMessage()
    assert "report-generator" in message
    assert "blocks_the_loop" in message  # where it blocks
    assert getattr(warnings[0], "work_name", None) == "report-generator"


async def test_blocking_in_a_coroutine_a_sync_work_function_returned_is_named(
    watch: _Watch,
) -> None:
    """A sync work function that returns a coroutine (run on the loop) and blocks: named too."""

    async def send(order: int) -> None:
        assert watch.warned.wait(10), "no warning while the loop was blocked"

    pool = WorkerPool(consumers=1, blocked_loop_threshold=0.05)
    with anyio.fail_after(20):
        async with pool:
            item = await pool.enqueue(lambda scope, stopping: send(42), name="send order 42")
    assert item.state is ItemState.SUCCEEDED
    warnings = [r for r in watch.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "send order 42" in warnings[0].getMessage()


async def test_sync_work_blocking_its_thread_is_not_reported(watch: _Watch) -> None:
    """A sync work function blocks a worker thread, not the loop: no warning."""

    def sleeps_in_a_thread(scope: Scope, stopping: StopToken) -> None:
        time.sleep(0.3)

    pool = WorkerPool(consumers=1, blocked_loop_threshold=0.05)
    with anyio.fail_after(10):
        async with pool:
            item = await pool.enqueue(sleeps_in_a_thread)
    assert item.state is ItemState.SUCCEEDED
    assert not watch.records


async def test_the_watchdog_can_be_turned_off() -> None:
    """blocked_loop_threshold=None starts no watchdog thread; by default one runs with the pool."""

    def watchdogs() -> int:
        return sum(t.name == "workpool loop watchdog" for t in threading.enumerate())

    before = watchdogs()
    async with WorkerPool(blocked_loop_threshold=None):
        assert watchdogs() == before
    async with WorkerPool():
        assert watchdogs() == before + 1
    assert watchdogs() == before


def test_the_threshold_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKPOOL_BLOCKED_LOOP_THRESHOLD sets the threshold; empty turns the watchdog off."""
    assert PoolSettings().blocked_loop_threshold == 1.0
    monkeypatch.setenv("WORKPOOL_BLOCKED_LOOP_THRESHOLD", "0.25")
    assert PoolSettings().blocked_loop_threshold == 0.25
    monkeypatch.setenv("WORKPOOL_BLOCKED_LOOP_THRESHOLD", "")
    assert PoolSettings().blocked_loop_threshold is None
    with pytest.raises(ValueError, match="blocked_loop_threshold"):
        WorkerPool(blocked_loop_threshold=0)
