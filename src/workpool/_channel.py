"""The bounded channel between producers and consumers.

`BackgroundWorker` is the in-memory channel (the .NET ``IBackgroundWorker`` over a
bounded ``Channel<T>``). The pool only uses it through the `Channel` protocol, so a
durable or distributed channel can stand in for it without touching consumers.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel

from ._delayed import delay_seconds, make_item
from ._exceptions import PoolClosedError, QueueFullError
from ._full import FullMode, parse_full_mode
from ._item import ItemState, Work, WorkItem, item_with_options
from ._log import logger
from ._memory import MemoryChannelBase
from ._seam import Channel, Settle
from ._session import hold_parent
from ._waiters import forget, wake_all, wake_first

if TYPE_CHECKING:
    from ._retry import RetryPolicy
    from ._session import Session

__all__ = ["BackgroundWorker", "Channel", "FullMode", "Settle", "parse_full_mode"]


@final
class BackgroundWorker(MemoryChannelBase):
    """A bounded FIFO channel of `WorkItem`, usable with or without a pool.

    Hand it to producers the way the .NET code injects ``IBackgroundWorker``; a
    `WorkerPool` built with ``worker=`` consumes it. Every method runs on the event
    loop's thread (use ``WorkerPool.enqueue_threadsafe`` from other threads).

    Args:
        capacity: how many items may wait in the channel.
        full_mode: what ``enqueue`` does when the channel is full (`FullMode` or
            its name).
        enqueue_timeout: in ``WAIT`` mode, how long ``enqueue`` waits for room
            before raising `QueueFullError`; ``None`` waits as long as it takes.
        on_drop: called with each dropped item (sync or async).

    Raises:
        ValueError: for a capacity below 1, an unknown mode, or a bad timeout.
    """

    __slots__ = ()

    # Class attributes (not slots): the same for every in-memory channel.
    durable: bool = False
    """Items live in this process only."""
    max_local_backoff: float = math.inf
    """Every retry wait is slept in the consumer."""

    # -- producers -----------------------------------------------------------------

    async def enqueue(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> WorkItem:
        """Queue *work* and return its `WorkItem` (the .NET ``QueueBackgroundWorkAsync``).

        When the channel is full, the full mode decides: wait for room, raise
        `QueueFullError`, or drop an item (which goes to ``on_drop``).

        Args:
            work: ``async def work(scope, stopping)`` or a sync function of the same
                arguments (run in a worker thread). Bind other arguments with
                ``functools.partial`` or a closure.
            parent_session: a session to join, e.g. the request's.
            retry: a `RetryPolicy` for this item, over the function's own.
            timeout: seconds each attempt may run before `TimeoutError`.
            name: a name for logs and metrics (default: the function's).
            delay: seconds after acceptance before the item may start; a delayed
                item takes room in the channel like a queued one.
            key: while an unfinished item (queued, delayed or running) holds this
                key, nothing is added and that item is returned.

        Raises:
            TypeError: *work* is not a work function (``None``, a coroutine object...),
                or *delay* / *key* has the wrong type.
            ValueError: *delay* is negative or not finite, or *key* is empty.
            PoolClosedError: the channel is closed.
            QueueFullError: the channel is full and the mode says not to wait.
        """
        # Keyword arguments cost a Python call about 150 ns: leave them out when unset.
        if retry is None and timeout is None and name is None and delay is None and key is None:
            item = WorkItem(work, parent_session)
        elif delay is None and key is None:  # options only: one call fewer
            item = item_with_options(work, parent_session, retry, timeout, name)
        else:
            item = make_item(work, parent_session, retry, timeout, name, key)
            return await self._enqueue_slow(item, delay_seconds(delay))
        if self._closed:
            raise self._closed_error()
        if len(self._items) >= self._room:
            return await self._enqueue_slow(item, None)
        # With room, an enqueue neither waits nor checks for cancellation (like
        # asyncio.Queue.put): the item is accepted at once. Checking costs about
        # 1 us on asyncio, more than the rest of the enqueue. (_accept's body.)
        if item.parent_session is not None:
            hold_parent(item)
        self._items.append(item)
        self._enqueued += 1
        self._unfinished += 1
        if self._getters:
            wake_first(self._getters)
        return item

    def enqueue_nowait(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> WorkItem:
        """Queue *work* without waiting; as `enqueue`, but ``WAIT`` mode raises when full.

        Raises:
            TypeError: *work* is not a work function, or a bad *delay* / *key* type.
            ValueError: a bad *delay* or *key* value.
            PoolClosedError: the channel is closed.
            QueueFullError: the channel is full in ``WAIT`` or ``REJECT`` mode.
        """
        # Keyword arguments cost a Python call about 150 ns: leave them out when unset.
        if retry is None and timeout is None and name is None and delay is None and key is None:
            item = WorkItem(work, parent_session)
        elif delay is None and key is None:  # options only: one call fewer
            item = item_with_options(work, parent_session, retry, timeout, name)
        else:
            item = make_item(work, parent_session, retry, timeout, name, key)
            return self._enqueue_slow_nowait(item, delay_seconds(delay))
        if self._closed:
            raise self._closed_error()
        if len(self._items) >= self._room:
            return self._enqueue_slow_nowait(item, None)
        self._accept(item)
        return item

    # The rare paths of enqueue*: delay= or key= (then *delay* is a number, 0.0 for
    # none), or a full channel.

    async def _enqueue_slow(self, item: WorkItem, delay: float | None) -> WorkItem:
        if self._closed:
            raise self._closed_error()
        if delay is not None and (held := self._later.holder(item)) is not None:
            return held
        if len(self._items) >= self._room:
            if self._full_mode is not FullMode.WAIT:
                await anyio.lowlevel.checkpoint_if_cancelled()
                dropped = self._make_room(item)
                # Take the room before the hook can yield: another producer must not
                # fill it meanwhile, nor may the channel close with the item half in.
                if item.state is not ItemState.DROPPED:
                    self._admit(item, delay)
                if dropped is not None:
                    await self._drops.report(dropped)
                return item
            await self._wait_for_room()
            item.enqueued_at = time.monotonic()  # accepted only now
            if delay is not None and (held := self._later.holder(item)) is not None:
                wake_first(self._putters)  # the key was taken meanwhile: pass the room on
                return held
        self._admit(item, delay)
        return item

    def _enqueue_slow_nowait(self, item: WorkItem, delay: float | None) -> WorkItem:
        if self._closed:
            raise self._closed_error()
        if delay is not None and (held := self._later.holder(item)) is not None:
            return held
        if len(self._items) >= self._room:
            if self._full_mode is FullMode.WAIT:
                self._rejected += 1
                raise QueueFullError(
                    f"the channel is full ({self._capacity} items); enqueue_nowait() never "
                    "waits: use 'await enqueue()' to wait for room, or raise the capacity"
                )
            dropped = self._make_room(item)
            if item.state is not ItemState.DROPPED:
                self._admit(item, delay)
            if dropped is not None:
                self._drops.report_nowait(dropped)
            return item
        self._admit(item, delay)
        return item

    def _accept(self, item: WorkItem) -> None:
        if item.parent_session is not None:
            hold_parent(item)
        self._items.append(item)
        self._enqueued += 1
        self._unfinished += 1
        if self._getters:
            wake_first(self._getters)

    def _admit(self, item: WorkItem, delay: float | None) -> None:
        """Accept an item on a rare path (*delay* as in `_enqueue_slow`)."""
        if delay is not None:
            self._later.hold_key(item)
        if not delay:
            self._sync_later()
            self._accept(item)
            return
        if item.parent_session is not None:
            hold_parent(item)
        self._enqueued += 1
        self._unfinished += 1
        first = self._later.push(item, delay)
        self._sync_later()
        if first and self._getters:
            wake_first(self._getters)  # a consumer waiting for an item re-times its wait

    async def _wait_for_room(self) -> None:
        timeout = self._enqueue_timeout
        if timeout is None:
            # No cancel scope to enter (about 6 us) for a wait without a deadline: a
            # producer that outpaces its consumers comes here every few dozen items.
            await self._until_room()
        else:
            try:
                with anyio.fail_after(timeout):
                    await self._until_room()
            except TimeoutError:
                self._rejected += 1
                raise QueueFullError(
                    f"the channel stayed full ({self._capacity} items) for the enqueue_timeout "
                    f"of {timeout} s; the consumers are not keeping up"
                ) from None
        if self._closed:
            raise self._closed_error()

    async def _until_room(self) -> None:
        while len(self._items) >= self._room:
            if self._closed:
                raise self._closed_error()
            event = anyio.Event()
            self._putters.append(event)
            try:
                await event.wait()
            except BaseException:
                if not event.is_set():
                    forget(self._putters, event)
                elif len(self._items) < self._room:
                    # Woken and cancelled at once: pass the room on.
                    wake_first(self._putters)
                raise

    def _make_room(self, item: WorkItem) -> WorkItem | None:
        """Apply a non-waiting full mode; return the dropped item, if any."""
        mode = self._full_mode
        if mode is FullMode.REJECT:
            self._rejected += 1
            raise QueueFullError(
                f"the channel is full ({self._capacity} items) and its full_mode is "
                "'reject'; retry later, raise the capacity, or choose another full_mode"
            )
        if mode is FullMode.DROP_WRITE:
            self._enqueued += 1  # accepted, and dropped at once
            dropped = item
        else:
            newest = mode is FullMode.DROP_NEWEST
            if self._delaying:  # the oldest or newest may be a delayed item
                dropped = self._later.evict(self._items, newest=newest)
            else:
                dropped = self._items.pop() if newest else self._items.popleft()
            self._unfinished -= 1
            if self._delaying or self._keyed:
                self._later.free(dropped)
                self._sync_later()
        dropped.state = ItemState.DROPPED
        self._dropped += 1
        logger.warning(
            "channel full (%d items, %s): dropped %s", self._capacity, mode.value, dropped.name
        )
        # No idle wake-up here: an evicted item is replaced by the new one at once.
        return dropped

    def _closed_error(self) -> PoolClosedError:
        return PoolClosedError(
            "the pool is shutting down or shut down and accepts no more work; enqueue "
            "before shutdown, or start a new pool"
        )

    # -- consumers -----------------------------------------------------------------

    def dequeue_nowait(self) -> WorkItem:
        """Take the oldest item that is due at once.

        Raises:
            anyio.WouldBlock: nothing is due (and the channel is open, or holds
                delayed items).
            PoolClosedError: the channel is closed and empty.
        """
        if self._delaying:
            self._promote()
        if self._items:
            item = self._items.popleft()
            if self._putters:
                wake_first(self._putters)
            return item
        if self._closed and not self._delayed:
            raise PoolClosedError("the channel is closed and empty")
        raise anyio.WouldBlock

    def _promote(self) -> None:
        """Move the delayed items that are due to the ready queue."""
        moved = self._later.promote(self._items, time.monotonic())
        if moved:
            self._sync_later()
            for _ in range(moved):
                if not self._getters:
                    break
                wake_first(self._getters)

    async def dequeue(self) -> WorkItem:
        """Take the oldest item that is due, waiting while there is none (``DequeueAsync``).

        Several concurrent callers each get distinct items. The caller owns the item
        and calls `task_done` when it is finished with it. A delayed item is taken
        once it is due, also after `close`.

        Raises:
            PoolClosedError: the channel is closed and empty.
        """
        if self._items or self._closed or self._delayed:
            # Nothing to wait for, but a checkpoint all the same; the item is taken
            # only where cancellation can no longer lose it.
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                item = self.dequeue_nowait()
            except anyio.WouldBlock:
                pass  # taken by another consumer meanwhile, or not due yet
            else:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return item
        while True:
            event = anyio.Event()
            self._getters.append(event)
            try:
                if self._delayed:
                    await self._wait_due(event)
                else:
                    await event.wait()
            except BaseException:
                if not event.is_set():
                    forget(self._getters, event)
                    if self._delayed:
                        wake_first(self._getters)  # another getter watches the clock
                elif self._items or self._delayed:
                    # Woken and cancelled at once: let another getter take the item.
                    wake_first(self._getters)
                raise
            # Woken: this call has yielded already, so the item is taken at once
            # (or the wait goes on, when another consumer was quicker).
            try:
                return self.dequeue_nowait()
            except anyio.WouldBlock:
                pass

    async def _wait_due(self, event: anyio.Event) -> None:
        """Wait for *event*, or until the first delayed item is due.

        A getter that started waiting before anything was delayed has no deadline:
        the item that becomes the first due wakes the first getter, which waits again
        with one (at the back of the line, so it is woken for a ready item only after
        every getter ahead of it, which then wait with a deadline too); a getter that
        leaves cancelled wakes the next one in its place.
        """
        seconds = self._later.seconds_to_due()
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await event.wait()
        if not event.is_set():
            forget(self._getters, event)

    def task_done(self, item: WorkItem) -> None:
        """Mark an item taken with `dequeue` as finished, whatever its outcome."""
        self._unfinished -= 1
        if self._keyed:
            self._free_key(item)
        if self._unfinished <= 0:
            self._unfinished = 0
            self._set_idle()

    def _free_key(self, item: WorkItem) -> None:
        self._later.free(item)
        self._keyed = bool(self._keys)

    def _sync_later(self) -> None:
        """The delayed items or the keys changed: update what the hot paths test."""
        self._room = self._capacity - len(self._delayed)
        self._delaying = bool(self._delayed)
        self._keyed = bool(self._keys)

    # The channel seam (`Channel`): in memory, a claim is a dequeue and every
    # settlement is a task_done.
    claim = dequeue
    claim_nowait = dequeue_nowait

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        """End a consumer's hold on a claimed item: in memory, `task_done`."""
        # task_done's body, not a call to it: this runs once per item.
        self._unfinished -= 1
        if self._keyed:
            self._free_key(item)
        if self._unfinished <= 0:
            self._unfinished = 0
            self._set_idle()

    async def join(self) -> None:
        """Wait until every accepted item is finished (queue empty, nothing running)."""
        if self._unfinished == 0:
            await anyio.lowlevel.checkpoint()
            return
        if self._idle is None:
            self._idle = anyio.Event()
        idle = self._idle
        await idle.wait()

    def _set_idle(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None:
            idle.set()

    def close(self) -> None:
        """Stop intake: ``enqueue*`` raise `PoolClosedError` from now on.

        Items already queued can still be dequeued; once they are gone, ``dequeue``
        raises `PoolClosedError`. Waiting producers and consumers are woken.
        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        wake_all(self._putters)
        wake_all(self._getters)

    def take_all(self) -> list[WorkItem]:
        """Remove and return every queued item, delayed ones last (for the shutdown
        deadline); their keys are free again."""
        items = list(self._items)
        self._items.clear()
        if self._delaying or self._keyed:
            items += self._later.take_all()
            for item in items:
                self._later.free(item)
            self._sync_later()
        self._unfinished -= len(items)
        if self._unfinished <= 0:
            self._unfinished = 0
            self._set_idle()
        wake_all(self._putters)
        if self._closed:
            wake_all(self._getters)  # nothing left to wait for
        return items
