"""The bounded channel between producers and consumers.

`BackgroundWorker` is the in-memory channel (the .NET ``IBackgroundWorker`` over a
bounded ``Channel<T>``). The pool only uses it through the `Channel` protocol, so a
durable or distributed channel can stand in for it without touching consumers.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.lowlevel

from ._checks import check_count, check_timeout
from ._exceptions import PoolClosedError, QueueFullError
from ._full import DropHooks, FullMode, parse_full_mode
from ._item import ItemState, Work, WorkItem
from ._log import logger
from ._seam import Channel, Settle
from ._session import hold_parent
from ._waiters import forget, wake_all, wake_first

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._hooks import Hook, Spawn
    from ._retry import RetryPolicy
    from ._session import Session

__all__ = ["BackgroundWorker", "Channel", "FullMode", "Settle", "parse_full_mode"]


def _make_item(
    work: Work,
    parent_session: Session | None,
    retry: RetryPolicy | None,
    timeout: float | None,
    name: str | None,
    delay: float | None,
    key: str | None,
) -> WorkItem:
    if delay is not None or key is not None:
        # TODO(delay/key): the in-memory channel gets delay= and key= next.
        raise NotImplementedError("delay= and key= are not supported yet in memory")
    return WorkItem(work, parent_session, retry=retry, timeout=timeout, name=name)


@final
class BackgroundWorker:
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

    __slots__ = (
        "_capacity",
        "_closed",
        "_dropped",
        "_drops",
        "_enqueue_timeout",
        "_enqueued",
        "_full_mode",
        "_getters",
        "_idle",
        "_items",
        "_putters",
        "_rejected",
        "_unfinished",
    )

    # Class attributes (not slots): the same for every in-memory channel.
    durable: bool = False
    """Items live in this process only."""
    max_local_backoff: float = math.inf
    """Every retry wait is slept in the consumer."""

    def __init__(
        self,
        capacity: int = 1000,
        full_mode: FullMode | str = FullMode.WAIT,
        *,
        enqueue_timeout: float | None = None,
        on_drop: Hook | None = None,
    ) -> None:
        self._capacity = check_count(capacity, "capacity")
        self._full_mode = parse_full_mode(full_mode)
        self._enqueue_timeout = check_timeout(enqueue_timeout, "enqueue_timeout")
        self._drops = DropHooks(on_drop)
        self._items: deque[WorkItem] = deque()
        self._getters: deque[anyio.Event] = deque()
        self._putters: deque[anyio.Event] = deque()
        self._idle: anyio.Event | None = None
        self._closed = False
        self._unfinished = 0
        self._enqueued = 0
        self._dropped = 0
        self._rejected = 0

    # -- introspection -------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many items may wait in the channel."""
        return self._capacity

    @property
    def full_mode(self) -> FullMode:
        """What ``enqueue`` does when the channel is full."""
        return self._full_mode

    @property
    def enqueue_timeout(self) -> float | None:
        """In ``WAIT`` mode, how long ``enqueue`` waits for room."""
        return self._enqueue_timeout

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    @property
    def enqueued_total(self) -> int:
        """Items accepted so far, including those dropped later."""
        return self._enqueued

    @property
    def dropped_total(self) -> int:
        """Items dropped so far by a ``DROP_*`` mode."""
        return self._dropped

    @property
    def rejected_total(self) -> int:
        """`QueueFullError` raised so far."""
        return self._rejected

    @property
    def unfinished(self) -> int:
        """Accepted items not yet finished: queued, or taken and not `task_done`."""
        return self._unfinished

    def qsize(self) -> int:
        """How many items are waiting in the channel."""
        return len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (
            f"<BackgroundWorker {len(self._items)}/{self._capacity} "
            f"{self._full_mode.value}{' closed' if self._closed else ''}>"
        )

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
            delay: seconds before the item may start (not supported yet in memory).
            key: at most one unfinished item per key (not supported yet in memory).

        Raises:
            TypeError: *work* is not a work function (``None``, a coroutine object...).
            PoolClosedError: the channel is closed.
            QueueFullError: the channel is full and the mode says not to wait.
        """
        # Keyword arguments cost a Python call about 150 ns: leave them out when unset.
        if retry is None and timeout is None and name is None and delay is None and key is None:
            item = WorkItem(work, parent_session)
        else:
            item = _make_item(work, parent_session, retry, timeout, name, delay, key)
        if self._closed:
            raise self._closed_error()
        if len(self._items) >= self._capacity:
            if self._full_mode is FullMode.WAIT:
                await self._wait_for_room()
                item.enqueued_at = time.monotonic()  # accepted only now
            else:
                await anyio.lowlevel.checkpoint_if_cancelled()
                dropped = self._make_room(item)
                # Take the room before the hook can yield: another producer must not
                # fill it meanwhile, nor may the channel close with the item half in.
                if item.state is not ItemState.DROPPED:
                    self._accept(item)
                if dropped is not None:
                    await self._drops.report(dropped)
                return item
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
            TypeError: *work* is not a work function.
            PoolClosedError: the channel is closed.
            QueueFullError: the channel is full in ``WAIT`` or ``REJECT`` mode.
        """
        # Keyword arguments cost a Python call about 150 ns: leave them out when unset.
        if retry is None and timeout is None and name is None and delay is None and key is None:
            item = WorkItem(work, parent_session)
        else:
            item = _make_item(work, parent_session, retry, timeout, name, delay, key)
        if self._closed:
            raise self._closed_error()
        if len(self._items) >= self._capacity:
            if self._full_mode is FullMode.WAIT:
                self._rejected += 1
                raise QueueFullError(
                    f"the channel is full ({self._capacity} items); enqueue_nowait() never "
                    "waits: use 'await enqueue()' to wait for room, or raise the capacity"
                )
            dropped = self._make_room(item)
            if item.state is not ItemState.DROPPED:
                self._accept(item)
            if dropped is not None:
                self._drops.report_nowait(dropped)
            return item
        self._accept(item)
        return item

    def _accept(self, item: WorkItem) -> None:
        if item.parent_session is not None:
            hold_parent(item)
        self._items.append(item)
        self._enqueued += 1
        self._unfinished += 1
        if self._getters:
            wake_first(self._getters)

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
        while len(self._items) >= self._capacity:
            if self._closed:
                raise self._closed_error()
            event = anyio.Event()
            self._putters.append(event)
            try:
                await event.wait()
            except BaseException:
                if not event.is_set():
                    forget(self._putters, event)
                elif len(self._items) < self._capacity:
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
        elif mode is FullMode.DROP_OLDEST:
            dropped = self._items.popleft()
            self._unfinished -= 1
        else:  # DROP_NEWEST
            dropped = self._items.pop()
            self._unfinished -= 1
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
        """Take the oldest item at once.

        Raises:
            anyio.WouldBlock: the channel is empty (and open).
            PoolClosedError: the channel is closed and empty.
        """
        if self._items:
            item = self._items.popleft()
            if self._putters:
                wake_first(self._putters)
            return item
        if self._closed:
            raise PoolClosedError("the channel is closed and empty")
        raise anyio.WouldBlock

    async def dequeue(self) -> WorkItem:
        """Take the oldest item, waiting while the channel is empty (``DequeueAsync``).

        Several concurrent callers each get distinct items. The caller owns the item
        and calls `task_done` when it is finished with it.

        Raises:
            PoolClosedError: the channel is closed and empty.
        """
        if self._items or self._closed:
            # Nothing to wait for, but a checkpoint all the same; the item is taken
            # only where cancellation can no longer lose it.
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                item = self.dequeue_nowait()
            except anyio.WouldBlock:
                pass  # another consumer took it while this one was at the checkpoint
            else:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return item
        while True:
            event = anyio.Event()
            self._getters.append(event)
            try:
                await event.wait()
            except BaseException:
                if not event.is_set():
                    forget(self._getters, event)
                elif self._items:
                    # Woken and cancelled at once: let another getter take the item.
                    wake_first(self._getters)
                raise
            # Woken: this call has yielded already, so the item is taken at once
            # (or the wait goes on, when another consumer was quicker).
            try:
                return self.dequeue_nowait()
            except anyio.WouldBlock:
                pass

    def task_done(self, item: WorkItem) -> None:
        """Mark an item taken with `dequeue` as finished, whatever its outcome."""
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._set_idle()

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
        if self._unfinished <= 0:
            self._unfinished = 0
            self._set_idle()

    async def open(self, tasks: Mapping[str, Any]) -> None:
        """Nothing to open in memory."""

    async def run(self) -> None:
        """No housekeeping in memory: returns at once."""

    async def aclose(self) -> None:
        """Nothing to release in memory."""

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
        """Remove and return every queued item (for the shutdown deadline)."""
        items = list(self._items)
        self._items.clear()
        self._unfinished -= len(items)
        if self._unfinished <= 0:
            self._unfinished = 0
            self._set_idle()
        wake_all(self._putters)
        return items

    def set_spawner(self, spawn: Spawn | None) -> None:
        """Give the channel a way to run async work (hooks, session ends) from sync
        code: the running pool's task group; ``None`` once it stops."""
        self._drops.spawn = spawn

    def add_drop_hook(self, hook: Hook) -> None:
        """Call *hook* with each dropped item too (sync or async; errors are logged)."""
        self._drops.add(hook)

    def remove_drop_hook(self, hook: Hook) -> None:
        """Stop calling *hook*; no effect if it was not added."""
        self._drops.remove(hook)
