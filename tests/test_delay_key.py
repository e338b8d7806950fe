"""``delay=`` and ``key=`` on the in-memory channel, alone and under a pool."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.accounting import assert_shut_down_accounted
from workpool import (
    BackgroundWorker,
    FullMode,
    ItemState,
    PoolClosedError,
    QueueFullError,
    Scope,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
    WorkItem,
)
from workpool._seam import Settle

if TYPE_CHECKING:
    from collections.abc import Callable

from tests.helpers.work import label_of, labelled, noop

pytestmark = pytest.mark.anyio


def claim_all_ready(worker: BackgroundWorker) -> list[str]:
    """Labels of the items due now, in claim order."""
    labels = []
    while True:
        try:
            labels.append(label_of(worker.claim_nowait()))
        except anyio.WouldBlock:
            return labels


async def sleep_past(item: WorkItem) -> None:
    """Sleep until *item* is due."""
    await anyio.sleep(max(0.0, item.not_before - time.monotonic()) + 0.005)


# -- bad arguments ---------------------------------------------------------------------


class TestArguments:
    @pytest.mark.parametrize("delay", [-1, -0.001, math.inf, math.nan])
    async def test_bad_delay_value(self, delay: float) -> None:
        """A negative, infinite or NaN delay is a ValueError at the call; nothing queued."""
        worker = BackgroundWorker()
        with pytest.raises(ValueError, match="delay"):
            worker.enqueue_nowait(noop, delay=delay)
        with pytest.raises(ValueError, match="delay"):
            await worker.enqueue(noop, delay=delay)
        assert worker.qsize() == 0
        assert worker.enqueued_total == 0

    @pytest.mark.parametrize("delay", ["1", True, [1]])
    async def test_bad_delay_type(self, delay: Any) -> None:
        """A delay that is not a number of seconds is a TypeError at the call."""
        worker = BackgroundWorker()
        with pytest.raises(TypeError, match="delay"):
            worker.enqueue_nowait(noop, delay=delay)
        with pytest.raises(TypeError, match="delay"):
            await worker.enqueue(noop, delay=delay)
        assert worker.qsize() == 0

    @pytest.mark.parametrize(
        ("key", "error"), [("", ValueError), (1, TypeError), (b"k", TypeError)]
    )
    async def test_bad_key(self, key: Any, error: type[Exception]) -> None:
        """An empty key is a ValueError, a key that is not a str a TypeError."""
        worker = BackgroundWorker()
        with pytest.raises(error, match="key"):
            worker.enqueue_nowait(noop, key=key)
        with pytest.raises(error, match="key"):
            await worker.enqueue(noop, key=key)
        assert worker.qsize() == 0
        assert worker.enqueued_total == 0

    async def test_closed_channel_refuses_options(self) -> None:
        """A closed channel raises PoolClosedError for delayed and keyed items too,
        even when the key is held."""
        worker = BackgroundWorker()
        worker.enqueue_nowait(noop, key="k")
        worker.close()
        with pytest.raises(PoolClosedError):
            worker.enqueue_nowait(noop, key="k")
        with pytest.raises(PoolClosedError):
            await worker.enqueue(noop, delay=1)


# -- delay -----------------------------------------------------------------------------


class TestDelay:
    async def test_not_claimed_before_due(self) -> None:
        """A delayed item waits in the channel (qsize counts it) and is claimed only
        once due."""
        worker = BackgroundWorker()
        item = worker.enqueue_nowait(noop, delay=0.05)
        assert item.not_before == pytest.approx(item.enqueued_at + 0.05)
        assert item.state is ItemState.QUEUED
        assert worker.qsize() == len(worker) == 1
        assert worker.unfinished == 1
        with pytest.raises(anyio.WouldBlock):
            worker.claim_nowait()
        with anyio.fail_after(5):
            assert await worker.claim() is item
        assert time.monotonic() >= item.not_before
        assert worker.qsize() == 0

    async def test_zero_delay_is_ready_at_once(self) -> None:
        """delay=0 queues the item as ready."""
        worker = BackgroundWorker()
        item = await worker.enqueue(noop, delay=0)
        assert worker.claim_nowait() is item

    async def test_ready_items_pass_delayed_ones(self) -> None:
        """An item enqueued after a delayed one, without a delay, is claimed first."""
        worker = BackgroundWorker()
        worker.enqueue_nowait(labelled("later"), delay=60)
        worker.enqueue_nowait(labelled("now"))
        assert claim_all_ready(worker) == ["now"]
        assert worker.qsize() == 1

    async def test_waiting_consumer_wakes_when_due(self) -> None:
        """A consumer waiting on an empty channel takes a delayed item enqueued later,
        once it is due."""
        worker = BackgroundWorker()
        claimed: list[WorkItem] = []

        async def consumer() -> None:
            claimed.append(await worker.claim())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                await anyio.wait_all_tasks_blocked()
                item = worker.enqueue_nowait(noop, delay=0.02)
        assert claimed == [item]
        assert time.monotonic() >= item.not_before

    async def test_earlier_item_rewakes_waiting_consumer(self) -> None:
        """A consumer waiting for a far delayed item takes an earlier one enqueued
        meanwhile when that one is due."""
        worker = BackgroundWorker()
        worker.enqueue_nowait(labelled("far"), delay=60)
        claimed: list[WorkItem] = []

        async def consumer() -> None:
            claimed.append(await worker.claim())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                await anyio.wait_all_tasks_blocked()
                worker.enqueue_nowait(labelled("near"), delay=0.02)
        assert [label_of(item) for item in claimed] == ["near"]

    async def test_many_waiting_consumers_share_due_items(self) -> None:
        """Items falling due together reach several waiting consumers."""
        worker = BackgroundWorker()
        claimed: list[str] = []

        async def consumer() -> None:
            claimed.append(label_of(await worker.claim()))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(consumer)
                await anyio.wait_all_tasks_blocked()
                for label in "abc":
                    worker.enqueue_nowait(labelled(label), delay=0.02)
        assert sorted(claimed) == ["a", "b", "c"]

    async def test_cancelled_timing_waiter_hands_the_clock_on(self) -> None:
        """When the consumer that waits for the next due item is cancelled, another
        waiting consumer takes the item when it is due."""
        worker = BackgroundWorker()
        claimed: list[WorkItem] = []

        async def consumer() -> None:
            claimed.append(await worker.claim())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg, anyio.create_task_group() as first:
                first.start_soon(consumer)  # waits with no deadline: nothing delayed
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(consumer)
                await anyio.wait_all_tasks_blocked()
                item = worker.enqueue_nowait(noop, delay=0.03)  # wakes the first
                await anyio.wait_all_tasks_blocked()
                first.cancel_scope.cancel()
        assert claimed == [item]

    async def test_fifo_among_due_items(self) -> None:
        """Due items are claimed in due-time order: a delayed item that fell due before
        a ready item was accepted goes first; ties go by acceptance."""
        worker = BackgroundWorker()
        # The gap between the due times is wide enough that a loaded machine's late
        # wake-up from the first sleep cannot make the second item due as well.
        late = worker.enqueue_nowait(labelled("due second"), delay=0.3)
        early = worker.enqueue_nowait(labelled("due first"), delay=0.02)
        worker.enqueue_nowait(labelled("due third"), delay=0.3)
        await sleep_past(early)
        worker.enqueue_nowait(labelled("ready, accepted after the first fell due"))
        await sleep_past(late)
        await anyio.sleep(0.01)
        worker.enqueue_nowait(labelled("ready last"))
        assert claim_all_ready(worker) == [
            "due first",
            "ready, accepted after the first fell due",
            "due second",
            "due third",
            "ready last",
        ]

    async def test_due_item_waits_behind_an_older_backlog(self) -> None:
        """A delayed item that falls due goes behind the ready items accepted before
        that and ahead of those accepted after."""
        worker = BackgroundWorker()
        worker.enqueue_nowait(labelled("backlog"))
        delayed = worker.enqueue_nowait(labelled("delayed"), delay=0.02)
        await sleep_past(delayed)
        worker.enqueue_nowait(labelled("after"))
        assert claim_all_ready(worker) == ["backlog", "delayed", "after"]

    async def test_closed_channel_still_hands_out_delayed_items(self) -> None:
        """After close, claim waits for the delayed items, then raises PoolClosedError."""
        worker = BackgroundWorker()
        item = worker.enqueue_nowait(noop, delay=0.02)
        worker.close()
        with pytest.raises(anyio.WouldBlock):
            worker.claim_nowait()
        with anyio.fail_after(5):
            assert await worker.claim() is item
            with pytest.raises(PoolClosedError):
                await worker.claim()

    async def test_take_all_returns_delayed_items_last(self) -> None:
        """take_all removes ready items, then delayed ones by due time; the channel is
        then empty and idle."""
        worker = BackgroundWorker()
        worker.enqueue_nowait(labelled("far"), delay=60)
        worker.enqueue_nowait(labelled("near"), delay=30)
        worker.enqueue_nowait(labelled("ready"))
        assert [label_of(item) for item in worker.take_all()] == ["ready", "near", "far"]
        assert worker.qsize() == 0
        assert worker.unfinished == 0
        with anyio.fail_after(5):
            await worker.join()

    async def test_join_waits_for_delayed_items(self) -> None:
        """join returns only once delayed items have been claimed and settled."""
        worker = BackgroundWorker()
        item = worker.enqueue_nowait(noop, delay=0.02)
        joined = False

        async def join() -> None:
            nonlocal joined
            await worker.join()
            joined = True

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(join)
                assert await worker.claim() is item
                await anyio.wait_all_tasks_blocked()
                assert not joined
                worker.settle(item, Settle.DONE)
        assert joined


class TestDelayCapacity:
    async def test_delayed_items_take_room(self) -> None:
        """Delayed items count against the capacity: a full channel of delayed items
        refuses more in WAIT (nowait) and REJECT modes."""
        worker = BackgroundWorker(2)
        worker.enqueue_nowait(noop, delay=60)
        worker.enqueue_nowait(noop)
        with pytest.raises(QueueFullError):
            worker.enqueue_nowait(noop)
        with pytest.raises(QueueFullError):
            worker.enqueue_nowait(noop, delay=1)
        rejecting = BackgroundWorker(1, FullMode.REJECT)
        rejecting.enqueue_nowait(noop, delay=60)
        with pytest.raises(QueueFullError):
            await rejecting.enqueue(noop)
        assert rejecting.rejected_total == 1

    async def test_waiting_producer_gets_the_room_of_a_claimed_delayed_item(self) -> None:
        """In WAIT mode, a producer blocked by delayed items proceeds once one is claimed."""
        worker = BackgroundWorker(1)
        delayed = worker.enqueue_nowait(noop, delay=0.02)
        added: list[WorkItem] = []

        async def producer() -> None:
            added.append(await worker.enqueue(labelled("waited")))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                await anyio.wait_all_tasks_blocked()
                assert added == []
                assert await worker.claim() is delayed
        assert [label_of(item) for item in added] == ["waited"]
        assert worker.qsize() == 1

    @pytest.mark.parametrize(
        ("mode", "order", "dropped"),
        [
            (FullMode.DROP_OLDEST, ["delayed", "ready"], "delayed"),
            (FullMode.DROP_OLDEST, ["ready", "delayed"], "ready"),
            (FullMode.DROP_NEWEST, ["ready", "delayed"], "delayed"),
            (FullMode.DROP_NEWEST, ["delayed", "ready"], "ready"),
        ],
    )
    async def test_drop_modes_see_delayed_items(
        self, mode: FullMode, order: list[str], dropped: str
    ) -> None:
        """drop_oldest / drop_newest evict the item accepted first / last, ready or
        delayed; it goes to on_drop."""
        gone: list[WorkItem] = []
        worker = BackgroundWorker(2, mode, on_drop=gone.append)
        for label in order:
            worker.enqueue_nowait(labelled(label), delay=60 if label == "delayed" else None)
            await anyio.sleep(0.001)  # distinct acceptance times
        new = await worker.enqueue(labelled("new"), delay=30)
        assert new.state is ItemState.QUEUED
        assert [label_of(item) for item in gone] == [dropped]
        assert gone[0].state is ItemState.DROPPED
        assert worker.qsize() == 2
        assert worker.dropped_total == 1
        assert worker.enqueued_total == 3

    async def test_drop_oldest_with_only_delayed_items(self) -> None:
        """A channel full of delayed items evicts the earliest accepted one."""
        worker = BackgroundWorker(2, FullMode.DROP_OLDEST)
        first = worker.enqueue_nowait(noop, delay=60)
        worker.enqueue_nowait(noop, delay=1)
        worker.enqueue_nowait(noop)
        assert first.state is ItemState.DROPPED
        assert worker.qsize() == 2

    async def test_drop_write_drops_a_delayed_item(self) -> None:
        """drop_write discards the new delayed item; the queued one stays."""
        worker = BackgroundWorker(1, FullMode.DROP_WRITE)
        kept = worker.enqueue_nowait(noop, delay=60)
        new = await worker.enqueue(noop, delay=1)
        assert new.state is ItemState.DROPPED
        assert kept.state is ItemState.QUEUED
        assert worker.qsize() == 1


# -- key -------------------------------------------------------------------------------


class TestKey:
    async def test_same_key_returns_the_queued_item(self) -> None:
        """While an item with the key is queued, enqueue adds nothing and returns it;
        it is not counted again; another key adds."""
        worker = BackgroundWorker()
        first = await worker.enqueue(noop, key="user:1")
        assert first.key == "user:1"
        assert await worker.enqueue(labelled("other"), key="user:1") is first
        assert worker.enqueue_nowait(noop, key="user:1", delay=5) is first
        assert worker.qsize() == 1
        assert worker.enqueued_total == 1
        other = worker.enqueue_nowait(noop, key="user:2")
        assert other is not first
        assert worker.enqueued_total == 2

    async def test_same_key_while_delayed_and_while_running(self) -> None:
        """The key is held while the item is delayed and while it runs (claimed, not
        settled), and free once it is settled, done or dead."""
        worker = BackgroundWorker()
        item = worker.enqueue_nowait(noop, key="k", delay=0.02)
        assert worker.enqueue_nowait(noop, key="k") is item
        with anyio.fail_after(5):
            assert await worker.claim() is item
        item.state = ItemState.RUNNING
        assert worker.enqueue_nowait(noop, key="k") is item
        item.state = ItemState.SUCCEEDED
        worker.settle(item, Settle.DONE)
        second = worker.enqueue_nowait(noop, key="k")
        assert second is not item
        assert worker.claim_nowait() is second
        second.state = ItemState.FAILED
        worker.settle(second, Settle.DEAD, reason="failed", error=ValueError("x"))
        third = worker.enqueue_nowait(noop, key="k")
        assert third is not second
        assert worker.enqueued_total == 3

    async def test_key_free_once_the_item_is_in_a_final_state(self) -> None:
        """An item whose outcome is known frees its key even before its consumer
        settles it (a new item is accepted); the late settle does not free the new
        item's key."""
        worker = BackgroundWorker()
        item = worker.enqueue_nowait(noop, key="k")
        assert worker.claim_nowait() is item
        item.state = ItemState.SUCCEEDED
        second = worker.enqueue_nowait(noop, key="k")
        assert second is not item
        worker.settle(item, Settle.DONE)
        assert worker.enqueue_nowait(noop, key="k") is second

    async def test_task_done_frees_the_key(self) -> None:
        """task_done (dequeue without a pool) frees the key as settle does."""
        worker = BackgroundWorker()
        item = worker.enqueue_nowait(noop, key="k")
        assert await worker.dequeue() is item
        worker.task_done(item)
        assert worker.enqueue_nowait(noop, key="k") is not item

    async def test_dropped_item_frees_its_key(self) -> None:
        """An evicted keyed item frees its key."""
        worker = BackgroundWorker(1, FullMode.DROP_OLDEST)
        item = worker.enqueue_nowait(noop, key="k")
        worker.enqueue_nowait(noop)
        assert item.state is ItemState.DROPPED
        again = worker.enqueue_nowait(noop, key="k")
        assert again is not item
        assert again.state is ItemState.QUEUED

    async def test_dropped_write_does_not_take_the_key(self) -> None:
        """A keyed item dropped by drop_write never held its key."""
        worker = BackgroundWorker(1, FullMode.DROP_WRITE)
        worker.enqueue_nowait(noop)
        lost = worker.enqueue_nowait(noop, key="k")
        assert lost.state is ItemState.DROPPED
        worker.claim_nowait()
        assert worker.enqueue_nowait(noop, key="k") is not lost

    async def test_take_all_frees_keys(self) -> None:
        """Items taken out by take_all free their keys (ready and delayed)."""
        worker = BackgroundWorker()
        ready = worker.enqueue_nowait(noop, key="a")
        delayed = worker.enqueue_nowait(noop, key="b", delay=60)
        assert set(worker.take_all()) == {ready, delayed}
        assert worker.enqueue_nowait(noop, key="a") is not ready
        assert worker.enqueue_nowait(noop, key="b") is not delayed

    async def test_full_channel_returns_the_holder_without_waiting(self) -> None:
        """A duplicate key on a full channel returns the holder: no wait, no drop, no
        QueueFullError."""
        gone: list[WorkItem] = []
        for mode in FullMode:
            worker = BackgroundWorker(1, mode, on_drop=gone.append)
            held = worker.enqueue_nowait(noop, key="k")
            with anyio.fail_after(5):
                assert await worker.enqueue(noop, key="k") is held
            assert worker.enqueue_nowait(noop, key="k") is held
            assert worker.rejected_total == 0
        assert gone == []

    async def test_waiting_producer_returns_the_item_that_took_its_key(self) -> None:
        """A keyed producer waiting for room returns the item that took the key while
        it waited, and passes the room on."""
        worker = BackgroundWorker(1)
        worker.enqueue_nowait(labelled("blocker"))
        results: list[WorkItem] = []

        async def producer(label: str, key: str | None) -> None:
            results.append(await worker.enqueue(labelled(label), key=key))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(producer, "waits", "k")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(producer, "plain", None)
                await anyio.wait_all_tasks_blocked()
                worker.claim_nowait()  # room: the keyed producer is woken...
                taker = worker.enqueue_nowait(labelled("took the key"), key="k")  # ...too late
                claimed = worker.claim_nowait()  # room again
                assert claimed is taker
                await anyio.wait_all_tasks_blocked()
                if len(results) < 2:  # trio woke the plain producer first: make room
                    worker.claim_nowait()
        assert len(results) == 2
        assert taker in results  # the keyed producer got the item that took its key
        assert sorted(label_of(item) for item in results) == ["plain", "took the key"]
        assert worker.enqueued_total == 3  # blocker, taker, plain

    async def test_key_holds_the_parent_session_once(self) -> None:
        """A duplicate keyed enqueue takes no second hold on its parent session: the
        session ends once the one item has run and the request left."""
        ended: list[Session] = []
        manager = SessionManager(on_end=ended.append)
        pool = WorkerPool(consumers=1, session_manager=manager)
        session = manager.create_session("request")
        first = await pool.enqueue(noop, session, key="k")
        assert await pool.enqueue(noop, session, key="k") is first
        await manager.release(session, "request")
        with anyio.fail_after(5):
            async with pool:
                await pool.join()
        assert first.state is ItemState.SUCCEEDED
        assert ended == [session]
        assert len(manager) == 0


# -- under a pool ----------------------------------------------------------------------


class TestPool:
    async def test_delayed_item_runs_after_its_delay(self) -> None:
        """A pool runs a delayed item no earlier than its delay after acceptance; join
        waits for it."""
        started: list[float] = []

        async def work(scope: Scope, stopping: StopToken) -> None:
            started.append(time.monotonic())

        with anyio.fail_after(5):
            async with WorkerPool(consumers=2) as pool:
                item = await pool.enqueue(work, delay=0.03)
                await pool.join()
                assert item.state is ItemState.SUCCEEDED
        assert started[0] >= item.not_before
        assert_shut_down_accounted(pool)

    async def test_shutdown_waits_for_delayed_items(self) -> None:
        """Leaving the pool runs delayed items that fall due within the deadline."""
        ran: list[str] = []

        async def work(scope: Scope, stopping: StopToken) -> None:
            ran.append(scope.item.name)

        with anyio.fail_after(5):
            async with WorkerPool(consumers=1, shutdown_deadline=5) as pool:
                pool.enqueue_nowait(work, delay=0.02, name="delayed")
        assert ran == ["delayed"]
        assert pool.report is not None
        assert pool.report.succeeded == 1
        assert not pool.report.deadline_hit
        assert_shut_down_accounted(pool)

    async def test_delayed_items_past_the_deadline_are_abandoned(self) -> None:
        """Delayed items still waiting at the shutdown deadline are abandoned: in the
        report, counted, given to on_abandoned; their keys are free."""
        seen: list[list[WorkItem]] = []
        pool = WorkerPool(consumers=2, shutdown_deadline=0.02, on_abandoned=seen.append)
        with anyio.fail_after(5):
            async with pool:
                item = await pool.enqueue(noop, delay=60, key="k")
                await pool.enqueue(noop, name="ready")
        report = pool.report
        assert report is not None
        assert report.abandoned == (item,)
        assert report.deadline_hit
        assert item.state is ItemState.ABANDONED
        assert seen == [[item]]
        assert pool.stats().abandoned == 1
        assert pool.stats().succeeded == 1
        assert_shut_down_accounted(pool)

    async def test_pool_never_started_abandons_delayed_items(self) -> None:
        """A pool shut down before it started abandons its delayed items too."""
        pool = WorkerPool(consumers=1)
        item = pool.enqueue_nowait(noop, delay=60)
        assert pool.stats().queued == 1
        report = await pool.shutdown(deadline=0)
        assert report.abandoned == (item,)
        assert_shut_down_accounted(pool)

    async def test_key_returns_the_running_item(self) -> None:
        """Enqueuing a key whose item runs returns that item; after it finished, the
        key runs again."""
        release = anyio.Event()
        runs = 0

        async def work(scope: Scope, stopping: StopToken) -> None:
            nonlocal runs
            runs += 1
            await release.wait()

        with anyio.fail_after(5):
            async with WorkerPool(consumers=2) as pool:
                first = await pool.enqueue(work, key="refresh")
                await anyio.wait_all_tasks_blocked()
                assert first.state is ItemState.RUNNING
                assert await pool.enqueue(work, key="refresh") is first
                assert pool.enqueue_nowait(work, key="refresh") is first
                release.set()
                await pool.join()
                second = await pool.enqueue(work, key="refresh")
                assert second is not first
                await pool.join()
        assert runs == 2
        assert pool.stats().enqueued == 2
        assert_shut_down_accounted(pool)

    async def test_enqueue_threadsafe_passes_delay_and_key(self) -> None:
        """enqueue_threadsafe takes delay= and key= as well."""
        with anyio.fail_after(5):
            async with WorkerPool(consumers=1) as pool:
                first = await pool.enqueue(noop, delay=0.2, key="k")

                def from_thread() -> WorkItem:
                    return pool.enqueue_threadsafe(noop, delay=0.2, key="k")

                assert await anyio.to_thread.run_sync(from_thread) is first
        assert pool.stats().enqueued == 1


# -- property: accounting with delays, keys, drops and shutdown -----------------------

PLAN = st.lists(
    st.tuples(
        st.sampled_from(["ok", "raise", "slow"]),
        st.sampled_from([None, 0.0, 0.002, 0.01, 0.03]),  # delay
        st.sampled_from([None, None, "a", "b"]),  # key
        st.booleans(),  # yield to the consumers first
    ),
    max_size=30,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    plan=PLAN,
    consumers=st.integers(min_value=1, max_value=4),
    capacity=st.integers(min_value=1, max_value=6),
    full_mode=st.sampled_from(list(FullMode)),
    nowait=st.booleans(),
    deadline=st.sampled_from([0.0, 0.01, 0.05]),
)
async def test_accounting_with_delays_and_keys(
    plan: list[tuple[str, float | None, str | None, bool]],
    consumers: int,
    capacity: int,
    full_mode: FullMode,
    nowait: bool,
    deadline: float,
) -> None:
    """Random mixes of delays, keys, full modes and shutdown deadlines: every accepted
    item ends one way and reaches its hook once, no item starts before it is due, and
    no two unfinished items ever share a key."""
    runs: Counter[int] = Counter()
    early: list[WorkItem] = []
    dropped: list[WorkItem] = []
    unfinished: list[list[WorkItem]] = []

    def make_work(behaviour: str) -> Callable[[Scope, StopToken], Any]:
        async def work(scope: Scope, stopping: StopToken) -> None:
            item = scope.item
            runs[id(item)] += 1
            if time.monotonic() < item.not_before:
                early.append(item)
            if behaviour == "raise":
                raise ValueError("boom")
            await anyio.sleep(0.02 if behaviour == "slow" else 0)

        return work

    pool = WorkerPool(
        consumers=consumers,
        capacity=capacity,
        full_mode=full_mode,
        enqueue_timeout=0.01,
        shutdown_deadline=deadline,
        cleanup_grace=0.1,
        on_drop=dropped.append,
        on_dead_letter=lambda item, exc: None,
        on_abandoned=unfinished.append,
    )
    accepted: list[WorkItem] = []
    holders: dict[str, WorkItem] = {}
    rejected = 0
    with anyio.fail_after(10):
        async with pool:
            for behaviour, delay, key, pause in plan:
                if pause:
                    await anyio.sleep(0.001)
                try:
                    work = make_work(behaviour)
                    if nowait:
                        item = pool.enqueue_nowait(work, delay=delay, key=key)
                    else:
                        item = await pool.enqueue(work, delay=delay, key=key)
                except QueueFullError:
                    rejected += 1
                    continue
                previous = holders.get(key) if key is not None else None
                if item is previous:
                    # deduplicated: the holder is unfinished, and nothing was added
                    assert not item.state.finished
                    continue
                # a new item: the key's previous item (if any) had finished
                assert previous is None or previous.state.finished
                accepted.append(item)
                if key is not None and item.state is not ItemState.DROPPED:
                    holders[key] = item
            if nowait:
                await anyio.sleep(0)  # let async work of sync drops settle

    stats = pool.stats()
    report = pool.report
    assert report is not None
    assert stats.enqueued == len(accepted)
    assert_shut_down_accounted(pool)
    assert stats.rejected == rejected
    states = Counter(item.state for item in accepted)
    assert states[ItemState.QUEUED] == states[ItemState.RUNNING] == 0
    assert {id(item) for item in dropped} == {
        id(item) for item in accepted if item.state is ItemState.DROPPED
    }
    assert len(dropped) == states[ItemState.DROPPED]
    assert {id(item) for item in report.abandoned} == {
        id(item) for item in accepted if item.state is ItemState.ABANDONED
    }
    if report.cancelled or report.abandoned:
        assert len(unfinished) == 1
        assert len(unfinished[0]) == len(report.cancelled) + len(report.abandoned)
    else:
        assert unfinished == []
    assert early == []
    for item in accepted:
        assert runs[id(item)] <= 1
        if item.state in (ItemState.DROPPED, ItemState.ABANDONED):
            assert runs[id(item)] == 0
