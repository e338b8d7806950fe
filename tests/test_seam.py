"""The channel seam: claim/settle in memory, and the pool's durable paths on a fake."""

from __future__ import annotations

import math
from typing import Any
from uuid import UUID

import anyio
import pytest
from tenacity import stop_after_attempt, wait_fixed

from tests.helpers.accounting import assert_delivered_accounted
from tests.helpers.durable import FakeDurableChannel
from workpool import (
    BackgroundWorker,
    Channel,
    ItemState,
    RetryPolicy,
    Scope,
    SessionManager,
    StopToken,
    WorkerPool,
    WorkItem,
    retry_policy,
)
from workpool._seam import Settle

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


# -- the in-memory channel on the seam -------------------------------------------------


class TestMemoryChannel:
    def test_is_a_channel_and_not_durable(self) -> None:
        """BackgroundWorker fits the extended protocol; it is not durable, sleeps every wait."""
        worker = BackgroundWorker()
        assert isinstance(worker, Channel)
        assert worker.durable is False
        assert worker.max_local_backoff == math.inf

    async def test_claim_and_settle_are_dequeue_and_task_done(self) -> None:
        """claim takes the oldest item and settle finishes it, whatever the outcome."""
        worker = BackgroundWorker()
        await worker.open({})
        await worker.run()
        first = worker.enqueue_nowait(noop)
        second = worker.enqueue_nowait(noop)
        assert worker.claim_nowait() is first
        assert await worker.claim() is second
        worker.settle(first, Settle.DONE)
        assert worker.unfinished == 1
        worker.settle(second, Settle.DEAD, reason="failed", error=ValueError("x"))
        assert worker.unfinished == 0
        with anyio.fail_after(5):
            await worker.join()
        await worker.aclose()

    async def test_delay_and_key_in_memory(self) -> None:
        """delay= and key= work in memory too (tests/test_delay_key.py has the rest)."""
        worker = BackgroundWorker()
        delayed = worker.enqueue_nowait(noop, delay=60.0, key="k")
        assert await worker.enqueue(noop, key="k") is delayed
        assert worker.qsize() == 1
        with pytest.raises(anyio.WouldBlock):
            worker.claim_nowait()

    def test_public_drop_hooks(self) -> None:
        """add_drop_hook/remove_drop_hook are public; a removed hook is not called."""
        dropped: list[WorkItem] = []
        worker = BackgroundWorker(1, "drop_oldest")
        worker.add_drop_hook(dropped.append)
        first = worker.enqueue_nowait(noop)
        worker.enqueue_nowait(noop)
        worker.remove_drop_hook(dropped.append)
        worker.enqueue_nowait(noop)
        assert dropped == [first]
        with pytest.raises(TypeError):
            worker.add_drop_hook(None)  # type: ignore[arg-type]


# -- WorkItem for channels ---------------------------------------------------------------


class TestWorkItem:
    def test_defaults_in_memory(self) -> None:
        """A new item is delivered once, has no receipt, rejection, key or delay."""
        item = WorkItem(noop)
        assert (item.deliveries, item.receipt, item.rejection, item.key, item.not_before) == (
            1,
            None,
            None,
            None,
            0.0,
        )
        assert item.parent_session_id is None

    def test_parent_session_id_from_the_session(self) -> None:
        """In memory, parent_session_id is the parent session's id."""
        session = SessionManager().create_session()
        assert WorkItem(noop, session).parent_session_id == session.id

    def test_restore(self) -> None:
        """restore() rebuilds an item from a store's fields, without private access."""
        message = UUID(int=7)
        parent = UUID(int=8)
        receipt = object()
        item = WorkItem.restore(
            noop,
            id=message,
            name="billing.charge",
            timeout=2.5,
            deliveries=3,
            attempts=2,
            receipt=receipt,
            parent_session_id=parent,
            key="invoice-1",
            enqueued_at=123.0,
        )
        assert item.id == message
        assert item.name == "billing.charge"
        assert item.timeout == 2.5
        assert (item.deliveries, item.attempts, item.receipt) == (3, 2, receipt)
        assert (item.parent_session_id, item.key, item.enqueued_at) == (parent, "invoice-1", 123.0)
        assert item.parent_session is None
        assert item.state is ItemState.QUEUED

    def test_workpool_async_marker(self) -> None:
        """A callable object that declares __workpool_async__ is run as it declares."""

        class Call:
            def __init__(self, is_async: bool) -> None:
                self.__workpool_async__ = is_async

            def __call__(self, scope: Scope, stopping: StopToken) -> Any:
                return noop(scope, stopping) if self.__workpool_async__ else None

        assert WorkItem(Call(True)).is_async is True
        assert WorkItem(Call(False)).is_async is False


# -- the pool's arguments ---------------------------------------------------------------


class TestPoolArguments:
    def test_channel_is_worker(self) -> None:
        """channel= is the new name of worker=; pool.channel and pool.worker agree."""
        channel = FakeDurableChannel()
        pool = WorkerPool(channel=channel)
        assert pool.channel is channel
        assert pool.worker is channel

    def test_worker_and_channel_are_exclusive(self) -> None:
        """Passing both is a ValueError."""
        with pytest.raises(ValueError, match="worker or channel"):
            WorkerPool(worker=BackgroundWorker(), channel=BackgroundWorker())

    def test_tasks_are_kept(self) -> None:
        """tasks= takes any iterable and keeps it; the registry goes to channel.open."""
        pool = WorkerPool(tasks=iter(()))
        assert dict(pool.tasks) == {}


# -- durable paths ----------------------------------------------------------------------


async def test_lifecycle_open_run_aclose() -> None:
    """The pool opens the channel with the task registry, runs its housekeeping while
    it runs, cancels it once the consumers stopped, and closes the channel last."""
    channel = FakeDurableChannel()
    pool = WorkerPool(channel=channel, consumers=2)
    with anyio.fail_after(10):
        async with pool:
            await pool.enqueue(noop)
            await pool.join()
            await anyio.wait_all_tasks_blocked()
            assert channel.events == ["open", "run"]
    assert channel.opened_with == {}
    assert channel.events == ["open", "run", "run cancelled", "aclose"]
    assert channel.outcomes() == [Settle.DONE]
    stats = pool.stats()
    assert (stats.delivered, stats.redelivered, stats.succeeded) == (1, 0, 1)
    assert_delivered_accounted(pool)


async def test_redelivery_is_counted() -> None:
    """An item claimed before (deliveries > 1) counts as redelivered and runs."""
    channel = FakeDurableChannel()
    ran: list[int] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        ran.append(scope.item.deliveries)

    channel.put(work, deliveries=2)
    with anyio.fail_after(10):
        async with WorkerPool(channel=channel) as pool:
            await pool.join()
    assert ran == [3]
    stats = pool.stats()
    assert (stats.delivered, stats.redelivered) == (1, 1)
    assert_delivered_accounted(pool)


async def test_rejected_item_is_dead_lettered_without_running() -> None:
    """A rejection from the channel never runs: failed, on_dead_letter, settled DEAD."""
    channel = FakeDurableChannel()
    ran: list[str] = []
    dead: list[tuple[WorkItem, BaseException]] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        ran.append("ran")

    message = channel.put(work, rejection=("unknown_task", LookupError("no task 'x'")))
    pool = WorkerPool(channel=channel, on_dead_letter=lambda item, exc: dead.append((item, exc)))
    with anyio.fail_after(10):
        async with pool:
            await pool.join()
    assert ran == []
    assert [(item.id, type(exc)) for item, exc in dead] == [(message, LookupError)]
    assert dead[0][0].state is ItemState.FAILED
    [settlement] = channel.settlements
    assert settlement.outcome is Settle.DEAD
    assert settlement.reason == "unknown_task"
    assert settlement.error == "LookupError: no task 'x'"
    stats = pool.stats()
    assert (stats.failed, stats.dead_lettered, stats.succeeded) == (1, 1, 0)
    assert_delivered_accounted(pool)


async def test_failure_settles_dead_with_the_error() -> None:
    """An item that fails for good is dead-lettered, then settled DEAD reason 'failed'."""
    channel = FakeDurableChannel()
    order: list[str] = []

    async def boom(scope: Scope, stopping: StopToken) -> None:
        raise ValueError("boom")

    def on_dead_letter(item: WorkItem, exc: BaseException) -> None:
        order.append(f"hook:{len(channel.settlements)}")

    channel.put(boom)
    with anyio.fail_after(10):
        async with WorkerPool(channel=channel, on_dead_letter=on_dead_letter) as pool:
            await pool.join()
    assert order == ["hook:0"]  # the hook runs before the settlement
    [settlement] = channel.settlements
    assert (settlement.outcome, settlement.reason, settlement.error) == (
        Settle.DEAD,
        "failed",
        "ValueError: boom",
    )
    assert_delivered_accounted(pool)


async def test_long_backoff_reschedules_with_attempts_carried() -> None:
    """A retry wait above max_local_backoff reschedules the item instead of sleeping;
    the next delivery continues the attempt count, and stop_after_attempt counts the
    attempts made before each reschedule."""
    channel = FakeDurableChannel(max_local_backoff=0.5)
    attempts_seen: list[int] = []

    @retry_policy(RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(60)))
    async def flaky(scope: Scope, stopping: StopToken) -> None:
        attempts_seen.append(scope.attempt)
        raise ConnectionError("down")

    channel.put(flaky)
    with anyio.fail_after(10):
        async with WorkerPool(channel=channel) as pool:
            await pool.join()
    assert attempts_seen == [1, 2, 3]
    assert channel.outcomes() == [Settle.RESCHEDULED, Settle.RESCHEDULED, Settle.DEAD]
    assert [s.attempts for s in channel.settlements] == [1, 2, 3]
    assert [s.delay for s in channel.settlements[:2]] == [60.0, 60.0]
    stats = pool.stats()
    assert (stats.delivered, stats.redelivered, stats.rescheduled) == (3, 2, 2)
    assert (stats.succeeded, stats.failed) == (0, 1)
    assert_delivered_accounted(pool)


async def test_short_backoff_is_slept_locally() -> None:
    """A retry wait within max_local_backoff is slept in the consumer: one delivery."""
    channel = FakeDurableChannel(max_local_backoff=0.5)
    calls: list[int] = []

    @retry_policy(RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.01)))
    async def second_time_lucky(scope: Scope, stopping: StopToken) -> None:
        calls.append(scope.attempt)
        if scope.attempt == 1:
            raise ConnectionError("down")

    channel.put(second_time_lucky)
    with anyio.fail_after(10):
        async with WorkerPool(channel=channel) as pool:
            await pool.join()
    assert calls == [1, 2]
    assert channel.outcomes() == [Settle.DONE]
    assert (pool.stats().delivered, pool.stats().retried) == (1, 1)
    assert_delivered_accounted(pool)


async def test_cancelled_at_the_deadline_is_released() -> None:
    """An item cancelled in flight at the deadline goes back to the store: released,
    listed in DrainReport.released, neither cancelled nor given to on_abandoned."""
    channel = FakeDurableChannel()
    started = anyio.Event()
    abandoned: list[list[WorkItem]] = []

    async def stuck(scope: Scope, stopping: StopToken) -> None:
        started.set()
        await anyio.sleep_forever()

    message = channel.put(stuck)
    pool = WorkerPool(channel=channel, on_abandoned=abandoned.append)
    with anyio.fail_after(10):
        async with pool:
            await started.wait()
            report = await pool.shutdown(deadline=0.05)
    assert [item.id for item in report.released] == [message]
    assert report.cancelled == ()
    assert report.abandoned == ()
    assert report.deadline_hit
    assert abandoned == []
    assert channel.outcomes() == [Settle.RELEASED]
    assert [stored.id for stored in channel.store] == [message]
    stats = pool.stats()
    assert (stats.released, stats.cancelled, stats.delivered) == (1, 0, 1)
    assert_delivered_accounted(pool)


async def test_shutdown_stops_claiming_and_leaves_the_store_alone() -> None:
    """At shutdown a durable pool finishes what it holds and claims nothing more;
    what is still stored is neither abandoned nor reported."""
    channel = FakeDurableChannel()
    started = anyio.Event()

    async def waits_for_stop(scope: Scope, stopping: StopToken) -> None:
        started.set()
        await stopping.wait()

    channel.put(waits_for_stop)
    pool = WorkerPool(channel=channel, consumers=1)
    with anyio.fail_after(10):
        async with pool:
            await started.wait()
            for _ in range(3):
                channel.put(noop)
    report = pool.report
    assert report is not None
    assert (report.succeeded, report.abandoned, report.deadline_hit) == (1, (), False)
    assert len(channel.store) == 3
    assert channel.outcomes() == [Settle.DONE]
    assert_delivered_accounted(pool)
