"""BackgroundWorker on its own: FIFO, waiting, closing, full modes, hooks, counters."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import anyio
import pytest

from tests.helpers.work import label_of, labelled, noop
from workpool import (
    BackgroundWorker,
    Channel,
    FullMode,
    ItemState,
    PoolClosedError,
    QueueFullError,
    RetryPolicy,
    WorkItem,
)

pytestmark = pytest.mark.anyio


async def fill(worker: BackgroundWorker, *labels: str) -> list[WorkItem]:
    return [await worker.enqueue(labelled(label)) for label in labels]


# -- construction --------------------------------------------------------------------


class TestConstruction:
    def test_defaults(self) -> None:
        """A bare worker holds 1000 items in WAIT mode with no enqueue timeout."""
        worker = BackgroundWorker()
        assert worker.capacity == 1000
        assert worker.full_mode is FullMode.WAIT
        assert worker.enqueue_timeout is None
        assert worker.qsize() == 0
        assert not worker.closed

    def test_satisfies_channel_protocol(self) -> None:
        """BackgroundWorker is a Channel, so the pool can use it through the protocol."""
        assert isinstance(BackgroundWorker(), Channel)

    @pytest.mark.parametrize("capacity", [0, -1])
    def test_capacity_below_one(self, capacity: int) -> None:
        """A capacity below 1 is a ValueError naming capacity."""
        with pytest.raises(ValueError, match="capacity"):
            BackgroundWorker(capacity)

    @pytest.mark.parametrize("capacity", [1.5, "10", True, None])
    def test_capacity_not_an_int(self, capacity: Any) -> None:
        """A capacity that is not an int is a TypeError naming capacity."""
        with pytest.raises(TypeError, match="capacity"):
            BackgroundWorker(capacity)

    @pytest.mark.parametrize(
        ("text", "mode"),
        [
            ("wait", FullMode.WAIT),
            ("DROP_OLDEST", FullMode.DROP_OLDEST),
            ("Drop-Oldest", FullMode.DROP_OLDEST),
            ("drop_newest", FullMode.DROP_NEWEST),
            (" Reject ", FullMode.REJECT),
            ("DROP-WRITE", FullMode.DROP_WRITE),
        ],
    )
    def test_full_mode_parsed_case_insensitively(self, text: str, mode: FullMode) -> None:
        """A full mode given as a string is parsed case-insensitively, '-' or '_'."""
        assert BackgroundWorker(full_mode=text).full_mode is mode
        assert FullMode(text) is mode

    @pytest.mark.parametrize("mode", ["drop", "", "wait!", 3, None])
    def test_unknown_full_mode(self, mode: Any) -> None:
        """An unknown full mode is a ValueError naming full_mode and the choices."""
        with pytest.raises(ValueError, match="full_mode") as info:
            BackgroundWorker(full_mode=mode)
        assert "drop_oldest" in str(info.value)

    def test_full_mode_values_are_lowercase_names(self) -> None:
        """FullMode values are the lowercase member names, and str() gives the value."""
        for mode in FullMode:
            assert mode.value == mode.name.lower()
            assert str(mode) == mode.value

    @pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
    def test_bad_enqueue_timeout_value(self, timeout: float) -> None:
        """A zero, negative or non-finite enqueue_timeout is a ValueError naming it."""
        with pytest.raises(ValueError, match="enqueue_timeout"):
            BackgroundWorker(enqueue_timeout=timeout)

    @pytest.mark.parametrize("timeout", ["1", True, [1]])
    def test_bad_enqueue_timeout_type(self, timeout: Any) -> None:
        """An enqueue_timeout that is not a number is a TypeError naming it."""
        with pytest.raises(TypeError, match="enqueue_timeout"):
            BackgroundWorker(enqueue_timeout=timeout)

    def test_constructed_outside_event_loop(self) -> None:
        """A worker can be built in sync code with no running loop, and used later."""
        worker = BackgroundWorker(2)
        item = worker.enqueue_nowait(noop)
        assert worker.dequeue_nowait() is item


# -- enqueue / dequeue -----------------------------------------------------------------


class TestEnqueueDequeue:
    async def test_fifo(self) -> None:
        """Items come out in the order they went in."""
        worker = BackgroundWorker(10)
        labels = [str(i) for i in range(10)]
        await fill(worker, *labels[:5])
        for label in labels[5:]:
            worker.enqueue_nowait(labelled(label))
        out = [label_of(await worker.dequeue()) for _ in labels]
        assert out == labels

    async def test_enqueue_returns_queued_item(self) -> None:
        """enqueue returns the WorkItem, QUEUED, carrying what was passed."""
        worker = BackgroundWorker()
        policy = RetryPolicy()
        item = await worker.enqueue(noop, retry=policy, timeout=2, name="greet")
        assert item.state is ItemState.QUEUED
        assert item.work is noop
        assert item.retry is policy
        assert item.timeout == 2.0
        assert item.name == "greet"
        assert item.parent_session is None

    async def test_qsize_and_capacity(self) -> None:
        """qsize counts waiting items; capacity stays fixed."""
        worker = BackgroundWorker(3)
        assert worker.qsize() == 0
        await fill(worker, "a", "b")
        assert worker.qsize() == 2
        assert len(worker) == 2
        assert worker.capacity == 3
        await worker.dequeue()
        assert worker.qsize() == 1

    async def test_dequeue_waits_while_empty(self) -> None:
        """dequeue waits for the next item and returns it once enqueued."""
        worker = BackgroundWorker()
        got: list[WorkItem] = []

        async def consume() -> None:
            got.append(await worker.dequeue())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                assert got == []
                item = await worker.enqueue(noop)
        assert got == [item]

    def test_dequeue_nowait_on_empty(self) -> None:
        """dequeue_nowait raises WouldBlock on an empty open channel."""
        with pytest.raises(anyio.WouldBlock):
            BackgroundWorker().dequeue_nowait()

    async def test_dequeue_is_cancellable(self) -> None:
        """A waiting dequeue can be cancelled, and the channel still works afterwards."""
        worker = BackgroundWorker()
        with anyio.move_on_after(0.01) as scope:
            await worker.dequeue()
        assert scope.cancelled_caught
        item = await worker.enqueue(noop)
        with anyio.fail_after(5):
            assert await worker.dequeue() is item

    async def test_cancelled_dequeue_loses_no_item(self) -> None:
        """A cancelled waiting dequeue leaves the next item to the other waiter."""
        worker = BackgroundWorker()
        got: list[WorkItem] = []

        async def consume() -> None:
            got.append(await worker.dequeue())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                async with anyio.create_task_group() as doomed:
                    doomed.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    tg.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    doomed.cancel_scope.cancel()
                item = await worker.enqueue(noop)
        assert got == [item]
        assert worker.qsize() == 0

    async def test_dequeue_woken_and_cancelled_passes_item_on(self) -> None:
        """A dequeuer woken for an item and cancelled at once never strands the item."""
        worker = BackgroundWorker()
        got: list[WorkItem] = []

        async def consume() -> None:
            got.append(await worker.dequeue())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                async with anyio.create_task_group() as doomed:
                    doomed.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    tg.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    item = worker.enqueue_nowait(noop)  # wakes the first waiter...
                    doomed.cancel_scope.cancel()  # ...which is cancelled before it runs
                await anyio.wait_all_tasks_blocked()
                # Either waiter may have it, but it is taken, once, not stranded.
                assert got == [item]
                assert worker.qsize() == 0
                tg.cancel_scope.cancel()

    async def test_concurrent_dequeuers_get_distinct_items(self) -> None:
        """Several concurrent dequeue callers each get distinct items."""
        worker = BackgroundWorker(100)
        got: list[WorkItem] = []

        async def consume(n: int) -> None:
            for _ in range(n):
                got.append(await worker.dequeue())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(consume, 10)
                await anyio.wait_all_tasks_blocked()
                items = [await worker.enqueue(labelled(str(i))) for i in range(50)]
        assert len(got) == 50
        assert {id(i) for i in got} == {id(i) for i in items}

    async def test_enqueued_at_is_set_when_accepted(self) -> None:
        """enqueued_at is the monotonic time the channel accepted the item."""
        import time

        worker = BackgroundWorker()
        before = time.monotonic()
        item = await worker.enqueue(noop)
        assert before <= item.enqueued_at <= time.monotonic()


# -- close -----------------------------------------------------------------------------


class TestClose:
    async def test_enqueue_after_close(self) -> None:
        """After close, enqueue and enqueue_nowait raise PoolClosedError."""
        worker = BackgroundWorker()
        worker.close()
        assert worker.closed
        with pytest.raises(PoolClosedError, match="accepts no more work"):
            await worker.enqueue(noop)
        with pytest.raises(PoolClosedError):
            worker.enqueue_nowait(noop)
        assert worker.enqueued_total == 0

    async def test_dequeue_drains_then_raises(self) -> None:
        """After close, dequeue returns what is queued, then raises PoolClosedError."""
        worker = BackgroundWorker()
        items = await fill(worker, "a", "b")
        worker.close()
        assert [await worker.dequeue(), await worker.dequeue()] == items
        with pytest.raises(PoolClosedError):
            await worker.dequeue()
        with pytest.raises(PoolClosedError):
            worker.dequeue_nowait()

    async def test_close_is_idempotent(self) -> None:
        """close can be called twice."""
        worker = BackgroundWorker()
        worker.close()
        worker.close()
        assert worker.closed

    async def test_close_wakes_waiting_dequeuers(self) -> None:
        """Dequeuers waiting on an empty channel get PoolClosedError on close."""
        worker = BackgroundWorker()
        errors: list[BaseException] = []

        async def consume() -> None:
            try:
                await worker.dequeue()
            except PoolClosedError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                worker.close()
        assert len(errors) == 3

    async def test_close_wakes_waiting_enqueuers(self) -> None:
        """Producers waiting for room get PoolClosedError on close; nothing is accepted."""
        worker = BackgroundWorker(1)
        await worker.enqueue(noop)
        errors: list[BaseException] = []

        async def produce() -> None:
            try:
                await worker.enqueue(noop)
            except PoolClosedError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                worker.close()
        assert len(errors) == 2
        assert worker.qsize() == 1
        assert worker.enqueued_total == 1

    async def test_enqueuer_woken_by_room_after_close_is_refused(self) -> None:
        """A producer that waited for room is refused if the channel closed meanwhile."""
        worker = BackgroundWorker(1)
        await worker.enqueue(noop)
        errors: list[BaseException] = []

        async def produce() -> None:
            try:
                await worker.enqueue(noop)
            except PoolClosedError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                worker.dequeue_nowait()  # room: wakes the producer...
                worker.close()  # ...but intake closes before it runs
        assert len(errors) == 1
        assert worker.qsize() == 0


# -- WAIT ------------------------------------------------------------------------------


class TestWaitMode:
    async def test_enqueue_waits_for_room(self) -> None:
        """In WAIT mode, enqueue on a full channel waits until a dequeue frees room."""
        worker = BackgroundWorker(1)
        await worker.enqueue(labelled("a"))
        done = anyio.Event()

        async def produce() -> None:
            await worker.enqueue(labelled("b"))
            done.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                assert not done.is_set()
                assert worker.qsize() == 1
                assert label_of(await worker.dequeue()) == "a"
                await done.wait()
            assert label_of(await worker.dequeue()) == "b"
        assert worker.rejected_total == 0

    async def test_waiting_enqueuers_proceed_in_turn(self) -> None:
        """Each dequeue lets one waiting producer in, and all eventually get in."""
        worker = BackgroundWorker(2)
        await fill(worker, "a", "b")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for label in "cde":
                    tg.start_soon(worker.enqueue, labelled(label))
                await anyio.wait_all_tasks_blocked()
                out = []
                for _ in range(5):
                    out.append(label_of(await worker.dequeue()))
                    await anyio.wait_all_tasks_blocked()
                    assert worker.qsize() <= 2
        assert sorted(out) == list("abcde")
        assert out[:2] == ["a", "b"]

    async def test_enqueue_timeout(self) -> None:
        """With enqueue_timeout, a full channel raises QueueFullError, counted as rejected."""
        worker = BackgroundWorker(1, enqueue_timeout=0.05)
        await worker.enqueue(noop)
        started = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(QueueFullError, match="enqueue_timeout"):
            await worker.enqueue(noop)
        assert anyio.current_time() - started >= 0.05  # it did wait that long first
        assert worker.rejected_total == 1
        assert worker.enqueued_total == 1
        assert worker.qsize() == 1

    async def test_timed_out_enqueuer_does_not_swallow_wakeup(self) -> None:
        """A producer that timed out does not take the wake-up meant for the next one."""
        worker = BackgroundWorker(1)
        await worker.enqueue(labelled("a"))
        # A waiting producer gives up (leaves), then another one waits.
        with anyio.move_on_after(0.01):
            await worker.enqueue(labelled("gave up"))
        done = anyio.Event()

        async def produce() -> None:
            await worker.enqueue(labelled("b"))
            done.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                worker.dequeue_nowait()
                await done.wait()
        assert [label_of(i) for i in worker.take_all()] == ["b"]

    async def test_enqueue_nowait_when_full(self) -> None:
        """In WAIT mode, enqueue_nowait on a full channel raises QueueFullError."""
        worker = BackgroundWorker(1)
        worker.enqueue_nowait(noop)
        with pytest.raises(QueueFullError, match="enqueue_nowait"):
            worker.enqueue_nowait(noop)
        assert worker.rejected_total == 1
        assert worker.enqueued_total == 1

    async def test_waiting_enqueue_is_cancellable(self) -> None:
        """A producer waiting for room can be cancelled; its item is not queued."""
        worker = BackgroundWorker(1)
        await worker.enqueue(noop)
        with anyio.move_on_after(0.01) as scope:
            await worker.enqueue(noop)
        assert scope.cancelled_caught
        assert worker.qsize() == 1
        assert worker.enqueued_total == 1
        assert worker.rejected_total == 0


# -- non-waiting modes -------------------------------------------------------------------


class TestDropModes:
    async def test_reject(self) -> None:
        """REJECT raises QueueFullError at once when full, from both enqueue calls."""
        worker = BackgroundWorker(1, FullMode.REJECT)
        await worker.enqueue(noop)
        with pytest.raises(QueueFullError, match="reject"):
            await worker.enqueue(noop)
        with pytest.raises(QueueFullError):
            worker.enqueue_nowait(noop)
        assert worker.rejected_total == 2
        assert worker.dropped_total == 0
        assert worker.qsize() == 1

    @pytest.mark.parametrize("nowait", [False, True])
    async def test_drop_oldest(self, nowait: bool) -> None:
        """DROP_OLDEST evicts the oldest item, which is DROPPED and reaches on_drop."""
        dropped: list[WorkItem] = []
        worker = BackgroundWorker(2, "drop_oldest", on_drop=dropped.append)
        a, b = await fill(worker, "a", "b")
        c = worker.enqueue_nowait(labelled("c")) if nowait else await worker.enqueue(labelled("c"))
        assert dropped == [a]
        assert a.state is ItemState.DROPPED
        assert c.state is ItemState.QUEUED
        assert worker.take_all() == [b, c]
        assert (worker.enqueued_total, worker.dropped_total) == (3, 1)

    @pytest.mark.parametrize("nowait", [False, True])
    async def test_drop_newest(self, nowait: bool) -> None:
        """DROP_NEWEST evicts the most recently queued item to make room."""
        dropped: list[WorkItem] = []
        worker = BackgroundWorker(2, FullMode.DROP_NEWEST, on_drop=dropped.append)
        a, b = await fill(worker, "a", "b")
        c = worker.enqueue_nowait(labelled("c")) if nowait else await worker.enqueue(labelled("c"))
        assert dropped == [b]
        assert b.state is ItemState.DROPPED
        assert worker.take_all() == [a, c]
        assert (worker.enqueued_total, worker.dropped_total) == (3, 1)

    @pytest.mark.parametrize("nowait", [False, True])
    async def test_drop_write(self, nowait: bool) -> None:
        """DROP_WRITE returns the new item DROPPED, calls on_drop, counts it enqueued and dropped."""
        dropped: list[WorkItem] = []
        worker = BackgroundWorker(1, FullMode.DROP_WRITE, on_drop=dropped.append)
        (a,) = await fill(worker, "a")
        b = worker.enqueue_nowait(labelled("b")) if nowait else await worker.enqueue(labelled("b"))
        assert b.state is ItemState.DROPPED
        assert dropped == [b]
        assert worker.take_all() == [a]
        assert (worker.enqueued_total, worker.dropped_total) == (2, 1)

    async def test_drop_is_logged(self, workpool_logs: pytest.LogCaptureFixture) -> None:
        """A dropped item is logged as a warning with its name."""
        worker = BackgroundWorker(1, FullMode.DROP_OLDEST)
        await worker.enqueue(noop, name="first")
        await worker.enqueue(noop)
        assert any(
            r.levelno == logging.WARNING and "first" in r.getMessage()
            for r in workpool_logs.records
        )

    async def test_async_on_drop(self) -> None:
        """An async on_drop hook is awaited by enqueue."""
        dropped: list[WorkItem] = []

        async def on_drop(item: WorkItem) -> None:
            await anyio.lowlevel.checkpoint()
            dropped.append(item)

        worker = BackgroundWorker(1, FullMode.DROP_OLDEST, on_drop=on_drop)
        (a,) = await fill(worker, "a")
        await worker.enqueue(noop)
        assert dropped == [a]

    @pytest.mark.parametrize("nowait", [False, True])
    async def test_raising_on_drop_is_logged_and_swallowed(
        self, nowait: bool, workpool_logs: pytest.LogCaptureFixture
    ) -> None:
        """A sync on_drop that raises is logged; enqueue still succeeds."""

        def on_drop(item: WorkItem) -> None:
            raise RuntimeError("hook broke")

        worker = BackgroundWorker(1, FullMode.DROP_OLDEST, on_drop=on_drop)
        await worker.enqueue(noop)
        item = worker.enqueue_nowait(noop) if nowait else await worker.enqueue(noop)
        assert item.state is ItemState.QUEUED
        assert worker.qsize() == 1
        errors = [r for r in workpool_logs.records if r.levelno == logging.ERROR]
        assert any("on_drop" in r.getMessage() for r in errors)
        assert any("hook broke" in (r.exc_text or "") for r in errors)

    async def test_raising_async_on_drop_is_logged_and_swallowed(
        self, workpool_logs: pytest.LogCaptureFixture
    ) -> None:
        """An async on_drop that raises inside enqueue is logged; enqueue still succeeds."""

        async def on_drop(item: WorkItem) -> None:
            raise RuntimeError("async hook broke")

        worker = BackgroundWorker(1, FullMode.DROP_WRITE, on_drop=on_drop)
        await worker.enqueue(noop)
        item = await worker.enqueue(noop)
        assert item.state is ItemState.DROPPED
        assert any("async hook broke" in (r.exc_text or "") for r in workpool_logs.records)

    async def test_async_on_drop_from_enqueue_nowait_without_pool(
        self, workpool_logs: pytest.LogCaptureFixture
    ) -> None:
        """An async on_drop reached from enqueue_nowait with no pool is closed and logged."""
        calls: list[WorkItem] = []

        async def on_drop(item: WorkItem) -> None:
            calls.append(item)  # pragma: no cover - never runs

        worker = BackgroundWorker(1, FullMode.DROP_OLDEST, on_drop=on_drop)
        worker.enqueue_nowait(noop)
        worker.enqueue_nowait(noop)  # no "never awaited" warning: filterwarnings=error
        assert calls == []
        assert worker.dropped_total == 1
        assert any(
            r.levelno == logging.ERROR and "could not run" in r.getMessage()
            for r in workpool_logs.records
        )

    async def test_slow_async_on_drop_keeps_capacity(self) -> None:
        """While an async on_drop runs, other producers cannot push the channel past capacity."""
        release = anyio.Event()

        async def on_drop(item: WorkItem) -> None:
            await release.wait()

        worker = BackgroundWorker(1, FullMode.DROP_OLDEST, on_drop=on_drop)
        await worker.enqueue(labelled("a"))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.enqueue, labelled("b"))
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(worker.enqueue, labelled("c"))
                await anyio.wait_all_tasks_blocked()
                release.set()
        assert worker.qsize() <= worker.capacity
        assert worker.enqueued_total == worker.qsize() + worker.dropped_total

    async def test_enqueue_during_slow_on_drop_after_close(self) -> None:
        """An item whose enqueue was under way when the channel closed is never lost."""
        release = anyio.Event()

        async def on_drop(item: WorkItem) -> None:
            await release.wait()

        worker = BackgroundWorker(1, FullMode.DROP_OLDEST, on_drop=on_drop)
        await worker.enqueue(labelled("a"))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.enqueue, labelled("b"))
                await anyio.wait_all_tasks_blocked()
                worker.close()
                left = worker.take_all()
                release.set()
        # Whatever the channel accepted is either taken out or still queued.
        assert worker.enqueued_total == len(left) + worker.qsize() + worker.dropped_total

    async def test_drop_does_not_wake_join(self) -> None:
        """Evicting an item to make room for another does not make join return early."""
        worker = BackgroundWorker(1, FullMode.DROP_OLDEST)
        await worker.enqueue(labelled("a"))
        returned = anyio.Event()

        async def joiner() -> None:
            await worker.join()
            returned.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(joiner)
                await anyio.wait_all_tasks_blocked()
                b = await worker.enqueue(labelled("b"))
                await anyio.wait_all_tasks_blocked()
                assert not returned.is_set()
                assert await worker.dequeue() is b
                worker.task_done(b)
                await returned.wait()


# -- counters, join, take_all ------------------------------------------------------------


class TestBookkeeping:
    async def test_counters(self) -> None:
        """enqueued, dropped and rejected totals count every outcome."""
        worker = BackgroundWorker(2, FullMode.DROP_OLDEST)
        await fill(worker, "a", "b", "c", "d")
        assert worker.enqueued_total == 4
        assert worker.dropped_total == 2
        assert worker.rejected_total == 0
        assert worker.unfinished == 2

    async def test_join_waits_for_task_done(self) -> None:
        """join returns only when every taken item was marked task_done."""
        worker = BackgroundWorker()
        items = await fill(worker, "a", "b")
        returned = anyio.Event()

        async def joiner() -> None:
            await worker.join()
            returned.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(joiner)
                for item in items:
                    assert await worker.dequeue() is item
                await anyio.wait_all_tasks_blocked()
                assert not returned.is_set()  # taken but not done
                worker.task_done(items[0])
                await anyio.wait_all_tasks_blocked()
                assert not returned.is_set()
                worker.task_done(items[1])
                await returned.wait()
        assert worker.unfinished == 0

    async def test_join_on_idle_returns(self) -> None:
        """join on a channel with nothing unfinished returns at once."""
        with anyio.fail_after(5):
            await BackgroundWorker().join()

    async def test_take_all(self) -> None:
        """take_all removes and returns every queued item in order and releases join."""
        worker = BackgroundWorker()
        items = await fill(worker, "a", "b", "c")
        assert worker.take_all() == items
        assert worker.qsize() == 0
        assert worker.unfinished == 0
        assert worker.take_all() == []
        with anyio.fail_after(5):
            await worker.join()

    async def test_take_all_lets_waiting_enqueuers_in(self) -> None:
        """take_all frees room, so producers waiting on an open channel get in."""
        worker = BackgroundWorker(1)
        await worker.enqueue(labelled("a"))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.enqueue, labelled("b"))
                await anyio.wait_all_tasks_blocked()
                assert [label_of(i) for i in worker.take_all()] == ["a"]
        assert [label_of(i) for i in worker.take_all()] == ["b"]

    def test_repr(self) -> None:
        """repr shows fill level, mode and closed state."""
        worker = BackgroundWorker(5, FullMode.REJECT)
        worker.enqueue_nowait(noop)
        worker.close()
        assert repr(worker) == "<BackgroundWorker 1/5 reject closed>"


# -- bad input -------------------------------------------------------------------------


class TestBadInput:
    async def test_none(self) -> None:
        """enqueue(None) is a TypeError saying to pass a callable."""
        worker = BackgroundWorker()
        with pytest.raises(TypeError, match="got None instead of a work function"):
            await worker.enqueue(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            worker.enqueue_nowait(None)  # type: ignore[arg-type]
        assert worker.qsize() == 0

    async def test_not_callable(self) -> None:
        """A non-callable is a TypeError naming its type."""
        worker = BackgroundWorker()
        with pytest.raises(TypeError, match=r"callable taking \(scope, stopping\).*'int'"):
            await worker.enqueue(42)  # type: ignore[arg-type]

    async def test_coroutine_object(self) -> None:
        """enqueue(send()) is a TypeError telling to pass send, and the coroutine is closed."""
        worker = BackgroundWorker()
        coro = noop(None, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"coroutine object.*enqueue\(noop\)"):
            await worker.enqueue(coro)  # type: ignore[arg-type]
        assert (
            inspect.getcoroutinestate(coro) == "CORO_CLOSED"
        )  # closed: no "never awaited" warning
        coro2 = noop(None, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"functools\.partial"):
            worker.enqueue_nowait(coro2)  # type: ignore[arg-type]
        assert worker.qsize() == 0

    async def test_bad_input_checked_before_closed(self) -> None:
        """Bad work is a TypeError even on a closed channel, and the coroutine is closed."""
        worker = BackgroundWorker()
        worker.close()
        with pytest.raises(TypeError):
            await worker.enqueue(noop(None, None))  # type: ignore[arg-type]

    @pytest.mark.parametrize("retry", ["3", 3, object()])
    async def test_bad_retry(self, retry: Any) -> None:
        """retry that is not a RetryPolicy is a TypeError naming retry."""
        with pytest.raises(TypeError, match="retry must be a RetryPolicy"):
            await BackgroundWorker().enqueue(noop, retry=retry)

    @pytest.mark.parametrize("timeout", [0, -1.5, float("nan"), float("inf")])
    async def test_bad_timeout_value(self, timeout: float) -> None:
        """A zero, negative or non-finite timeout is a ValueError naming timeout."""
        with pytest.raises(ValueError, match="timeout"):
            await BackgroundWorker().enqueue(noop, timeout=timeout)

    @pytest.mark.parametrize("timeout", ["1", True])
    async def test_bad_timeout_type(self, timeout: Any) -> None:
        """A timeout that is not a number is a TypeError naming timeout."""
        with pytest.raises(TypeError, match="timeout"):
            BackgroundWorker().enqueue_nowait(noop, timeout=timeout)

    @pytest.mark.parametrize("name", [1, b"x"])
    async def test_bad_name(self, name: Any) -> None:
        """A name that is not a str is a TypeError naming name."""
        with pytest.raises(TypeError, match="name must be a str"):
            await BackgroundWorker().enqueue(noop, name=name)

    @pytest.mark.parametrize("parent", ["session-id", object()])
    async def test_bad_parent_session(self, parent: Any) -> None:
        """A parent_session that is not a Session is a TypeError naming parent_session."""
        with pytest.raises(TypeError, match=r"parent_session must be a workpool\.Session"):
            await BackgroundWorker().enqueue(noop, parent)
