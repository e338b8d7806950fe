"""WorkerPool basics: consumers, ordering, join, stats, arguments, settings, logs, full modes."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from tests.helpers.accounting import assert_accounted
from workpool import (
    FullMode,
    ItemState,
    LogContextFilter,
    PoolSettings,
    QueueFullError,
    Scope,
    StopToken,
    WorkerPool,
    WorkItem,
    current_scope,
)


class Gate:
    """Items that wait on one shared event and record how many run at once."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.running = 0
        self.max_running = 0
        self.started: list[str] = []

    def work(self, label: str) -> Any:
        async def run(scope: Scope, stopping: StopToken) -> None:
            self.started.append(label)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            try:
                await self.release.wait()
            finally:
                self.running -= 1

        return run


# -- consumers ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("consumers", [1, 3])
async def test_n_consumers_run_n_items_at_once(consumers: int) -> None:
    """With N consumers, exactly N items run at the same time, never more."""
    gate = Gate()
    with anyio.fail_after(5):
        async with WorkerPool(consumers=consumers) as pool:
            for i in range(consumers * 3):
                await pool.enqueue(gate.work(str(i)))
            await anyio.wait_all_tasks_blocked()
            assert gate.running == consumers
            assert pool.stats().busy == consumers
            assert pool.stats().queued == consumers * 2
            gate.release.set()
            await pool.join()
    assert gate.max_running == consumers
    assert len(gate.started) == consumers * 3
    assert pool.stats().succeeded == consumers * 3


@pytest.mark.anyio
async def test_one_consumer_starts_items_in_fifo_order() -> None:
    """A single consumer starts items in the order they were enqueued."""
    order: list[int] = []

    def work(i: int) -> Any:
        async def run(scope: Scope, stopping: StopToken) -> None:
            order.append(i)
            await anyio.lowlevel.checkpoint()

        return run

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            for i in range(50):
                await pool.enqueue(work(i))
            await pool.join()
    assert order == list(range(50))


@pytest.mark.anyio
async def test_a_failing_item_does_not_stop_the_next() -> None:
    """An item that raises is counted failed, and the consumer goes on to the next one."""
    ran: list[str] = []
    dead: list[tuple[WorkItem, BaseException]] = []

    async def boom(scope: Scope, stopping: StopToken) -> None:
        ran.append("boom")
        raise RuntimeError("boom")

    async def fine(scope: Scope, stopping: StopToken) -> None:
        ran.append("fine")

    with anyio.fail_after(5):
        async with WorkerPool(
            consumers=1, on_dead_letter=lambda item, exc: dead.append((item, exc))
        ) as pool:
            bad = await pool.enqueue(boom)
            good = await pool.enqueue(fine)
            await pool.join()
    assert ran == ["boom", "fine"]
    assert bad.state is ItemState.FAILED
    assert good.state is ItemState.SUCCEEDED
    assert [(item, type(exc)) for item, exc in dead] == [(bad, RuntimeError)]
    stats = pool.stats()
    assert (stats.succeeded, stats.failed, stats.dead_lettered) == (1, 1, 1)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_items_enqueued_before_start_run_once_it_starts() -> None:
    """Items queued before the pool starts wait in the channel, then run."""
    ran: list[int] = []

    def work(i: int) -> Any:
        async def run(scope: Scope, stopping: StopToken) -> None:
            ran.append(i)

        return run

    pool = WorkerPool(consumers=2)
    first = pool.enqueue_nowait(work(1))
    second = await pool.enqueue(work(2))
    await anyio.wait_all_tasks_blocked()
    assert ran == []
    assert first.state is ItemState.QUEUED
    assert pool.stats().queued == 2
    with anyio.fail_after(5):
        async with pool:
            await pool.join()
    assert sorted(ran) == [1, 2]
    assert first.state is second.state is ItemState.SUCCEEDED


@pytest.mark.anyio
async def test_join_waits_for_queued_and_running_items() -> None:
    """join() returns only once the channel is empty and no item is running."""
    gate = Gate()
    joined = anyio.Event()
    with anyio.fail_after(5):
        async with WorkerPool(consumers=2) as pool:
            for i in range(5):
                await pool.enqueue(gate.work(str(i)))

            async def joiner() -> None:
                await pool.join()
                joined.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(joiner)
                await anyio.wait_all_tasks_blocked()
                assert not joined.is_set()
                gate.release.set()
                await joined.wait()
            stats = pool.stats()
            assert (stats.busy, stats.queued, stats.succeeded) == (0, 0, 5)


@pytest.mark.anyio
async def test_join_returns_at_once_when_idle() -> None:
    """join() on an idle pool returns without waiting."""
    with anyio.fail_after(5):
        async with WorkerPool() as pool:
            await pool.join()


# -- stats -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_count_outcomes_and_summarize_times() -> None:
    """stats() counts each outcome and summarizes queue wait and run times."""

    async def ok(scope: Scope, stopping: StopToken) -> None:
        await anyio.lowlevel.checkpoint()

    async def bad(scope: Scope, stopping: StopToken) -> None:
        raise ValueError("bad")

    pool = WorkerPool(consumers=2, capacity=50)
    before = pool.stats()
    assert (before.consumers, before.capacity, before.enqueued, before.running) == (2, 50, 0, False)
    assert before.wait_time.count == before.run_time.count == 0
    with anyio.fail_after(5):
        async with pool:
            for _ in range(7):
                await pool.enqueue(ok)
            for _ in range(3):
                await pool.enqueue(bad)
            await pool.join()
            stats = pool.stats()
            assert stats.running
    assert (stats.enqueued, stats.succeeded, stats.failed, stats.busy, stats.queued) == (
        10,
        7,
        3,
        0,
        0,
    )
    assert (stats.retried, stats.dropped, stats.rejected, stats.timed_out) == (0, 0, 0, 0)
    assert (stats.cancelled, stats.abandoned, stats.dead_lettered) == (0, 0, 0)
    for summary in (stats.wait_time, stats.run_time):
        assert summary.count == 10
        assert 0 <= summary.p50 <= summary.p95 <= summary.p99 <= summary.max
        assert 0 <= summary.mean <= summary.max
    assert not pool.stats().running
    assert_accounted(pool)


# -- arguments and settings ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"consumers": 0}, "consumers"),
        ({"capacity": 0}, "capacity"),
        ({"shutdown_deadline": -1.0}, "shutdown_deadline"),
        ({"full_mode": "sometimes"}, "full_mode"),
        ({"thread_limit": 0}, "thread_limit"),
        ({"task_timeout": -1}, "task_timeout"),
        ({"enqueue_timeout": 0}, "enqueue_timeout"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(
    kwargs: dict[str, Any], argument: str
) -> None:
    """An out-of-range argument raises ValueError naming that argument."""
    with pytest.raises(ValueError, match=argument):
        WorkerPool(**kwargs)


def test_registry_and_scope_factory_together_is_an_error() -> None:
    """Passing both registry= and scope_factory= raises ValueError naming both."""
    import svcs

    with pytest.raises(ValueError, match=r"registry.*scope_factory"):
        WorkerPool(registry=svcs.Registry(), scope_factory=lambda: svcs.Container(svcs.Registry()))


@pytest.mark.anyio
async def test_shutdown_rejects_a_negative_deadline() -> None:
    """shutdown(deadline=-1) raises ValueError naming the deadline."""
    pool = WorkerPool()
    with pytest.raises(ValueError, match="deadline"):
        await pool.shutdown(deadline=-1)


def test_full_mode_strings_are_parsed_case_insensitively() -> None:
    """full_mode accepts the mode's name in any case."""
    pool = WorkerPool(full_mode="Drop_Oldest")
    assert getattr(pool.worker, "full_mode", None) is FullMode.DROP_OLDEST


def test_from_settings_applies_settings_and_overrides() -> None:
    """from_settings() configures the pool from PoolSettings; keyword overrides win."""
    settings = PoolSettings(consumers=3, capacity=20, full_mode="reject", shutdown_deadline=2)
    pool = WorkerPool.from_settings(settings, capacity=7)
    assert pool.consumers == 3
    assert pool.stats().capacity == 7
    assert getattr(pool.worker, "full_mode", None) is FullMode.REJECT
    assert pool.shutdown_deadline == 2.0


def test_session_settings_reach_the_session_manager() -> None:
    """from_settings() builds the SessionManager from the [session] settings."""
    settings = PoolSettings(session={"default_duration": 12.5})
    pool = WorkerPool.from_settings(settings)
    assert pool.session_manager.default_duration == 12.5


def test_a_bare_pool_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """WorkerPool() ignores WORKPOOL_* variables; from_settings() reads them."""
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "7")
    assert WorkerPool().consumers == 4
    assert WorkerPool.from_settings().consumers == 7


@pytest.mark.anyio
async def test_a_pool_runs_once() -> None:
    """A pool cannot be started twice."""
    pool = WorkerPool()
    async with pool:
        pass
    with pytest.raises(RuntimeError, match="runs once"):
        async with pool:
            pass


# -- logs ----------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.anyio
async def test_records_logged_inside_work_carry_the_item_ids() -> None:
    """LogContextFilter tags the application's records with the running item's ids."""
    handler = ListHandler()
    handler.addFilter(LogContextFilter())
    app_logger = logging.getLogger("tests.app")
    app_logger.addHandler(handler)
    app_logger.setLevel(logging.INFO)
    seen: list[Scope] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        seen.append(scope)
        app_logger.info("inside")

    try:
        with anyio.fail_after(5):
            async with WorkerPool() as pool:
                await pool.enqueue(work, name="send-receipt")
                await pool.join()
        app_logger.info("outside")
    finally:
        app_logger.removeHandler(handler)
    inside, outside = handler.records
    (scope,) = seen
    assert inside.scope_id == scope.id  # type: ignore[attr-defined]
    assert inside.session_id == scope.session_id  # type: ignore[attr-defined]
    assert inside.session_id is not None  # type: ignore[attr-defined]
    assert inside.work_name == "send-receipt"  # type: ignore[attr-defined]
    assert inside.attempt == 1  # type: ignore[attr-defined]
    assert outside.scope_id is None  # type: ignore[attr-defined]
    assert outside.work_name is None  # type: ignore[attr-defined]
    assert current_scope() is None


# -- full modes through the pool -----------------------------------------------------


async def _fill(pool: WorkerPool, gate: Gate) -> tuple[WorkItem, WorkItem]:
    """Block the single consumer on one item and fill the capacity-2 channel."""
    await pool.enqueue(gate.work("running"))
    await anyio.wait_all_tasks_blocked()
    assert gate.running == 1
    older = await pool.enqueue(gate.work("older"))
    newer = await pool.enqueue(gate.work("newer"))
    return older, newer


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "victim"),
    [
        (FullMode.DROP_OLDEST, "older"),
        (FullMode.DROP_NEWEST, "newer"),
        (FullMode.DROP_WRITE, "new"),
    ],
)
async def test_drop_modes_report_every_dropped_item(mode: FullMode, victim: str) -> None:
    """Each drop mode evicts the item it names, which reaches on_drop and stats().dropped."""
    dropped: list[WorkItem] = []
    gate = Gate()
    with anyio.fail_after(5):
        async with WorkerPool(
            consumers=1, capacity=2, full_mode=mode, on_drop=dropped.append
        ) as pool:
            older, newer = await _fill(pool, gate)
            new = await pool.enqueue(gate.work("new"))
            nowait = pool.enqueue_nowait(gate.work("nowait"))
            gate.release.set()
            await pool.join()
    items = {"older": older, "newer": newer, "new": new, "nowait": nowait}
    assert dropped[0] is items[victim]
    assert len(dropped) == 2  # the nowait enqueue found the channel full again
    assert pool.stats().dropped == 2
    for label, item in items.items():
        was_dropped = any(item is d for d in dropped)
        assert item.state is (ItemState.DROPPED if was_dropped else ItemState.SUCCEEDED)
        assert (label in gate.started) is not was_dropped
    assert_accounted(pool)


@pytest.mark.anyio
async def test_reject_mode_raises_and_counts() -> None:
    """REJECT raises QueueFullError at once and counts it in stats().rejected."""
    gate = Gate()
    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, capacity=2, full_mode=FullMode.REJECT) as pool:
            await _fill(pool, gate)
            with pytest.raises(QueueFullError):
                await pool.enqueue(gate.work("x"))
            with pytest.raises(QueueFullError):
                pool.enqueue_nowait(gate.work("y"))
            gate.release.set()
    stats = pool.stats()
    assert (stats.rejected, stats.enqueued, stats.succeeded) == (2, 3, 3)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_wait_mode_waits_for_room() -> None:
    """WAIT makes enqueue wait for room, enqueue_nowait raise, enqueue_timeout give up."""
    gate = Gate()
    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, capacity=2, enqueue_timeout=0.05) as pool:
            await _fill(pool, gate)
            with pytest.raises(QueueFullError):
                pool.enqueue_nowait(gate.work("x"))
            with pytest.raises(QueueFullError):
                await pool.enqueue(gate.work("y"))
            assert pool.stats().rejected == 2
            gate.release.set()
            item = await pool.enqueue(gate.work("z"))
            await pool.join()
    assert item.state is ItemState.SUCCEEDED
    assert pool.stats().dropped == 0
    assert_accounted(pool)


@pytest.mark.anyio
async def test_wait_mode_without_timeout_blocks_until_a_consumer_takes_one() -> None:
    """In WAIT mode with no timeout, a blocked enqueue completes once room appears."""
    gate = Gate()
    done = anyio.Event()
    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, capacity=2) as pool:
            await _fill(pool, gate)

            async def producer() -> None:
                await pool.enqueue(gate.work("late"))
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                await anyio.wait_all_tasks_blocked()
                assert not done.is_set()
                gate.release.set()
                await done.wait()
            await pool.join()
    assert "late" in gate.started
