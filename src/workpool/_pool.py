"""WorkerPool: configuration, enqueue, stats, and the lifecycle of its consumers.

The consumer loop is `_consumers.Consumers`'; running one item is
`_execution.ItemRunner`'s; shutdown is `_drain.Drain`'s; the counters and
lifecycle flags they share live in `_state.PoolState`.
"""

from __future__ import annotations

import threading
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Self, final

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._channel import FullMode
from ._checks import check_count, check_non_negative_seconds, check_timeout
from ._config import (
    check_hooks,
    choose_channel,
    choose_scope_factory,
    resolve_tasks,
    settings_arguments,
)
from ._consumers import Consumers
from ._detached import Detached, start_detached
from ._drain import CleanupBudget, Drain
from ._exceptions import PoolClosedError
from ._execution import ItemListener, ItemRunner
from ._item import check_work
from ._retry import RetryPolicy
from ._session import SessionManager
from ._state import PoolState
from ._stats import DrainReport, PoolStats
from ._stop import StopToken
from ._unstarted import watch_unstarted
from ._watchdog import LoopWatchdog, loop_poster

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping
    from types import TracebackType

    import svcs

    from ._hooks import Hook
    from ._item import Work, WorkItem
    from ._scope import ScopeFactory
    from ._seam import Channel, Enqueue
    from ._session import Session
    from ._settings import PoolSettings

__all__ = ["WorkerPool"]


@final
class WorkerPool:
    """N consumers sharing one bounded channel (the .NET ``BackgroundTaskService``).

    Each item runs in its own DI scope (a fresh ``svcs`` container per attempt) and
    session (its parent's when that is still active, else its own), under its retry
    policy and per-attempt timeout; the pool drains gracefully when it shuts down.

    ::

        async with WorkerPool(consumers=4) as pool:
            await pool.enqueue(send_receipt, request_session)

    Args:
        consumers: how many items run at once.
        capacity: how many items may wait in the channel.
        full_mode: what ``enqueue`` does when the channel is full.
        enqueue_timeout: in ``WAIT`` mode, how long ``enqueue`` waits for room.
        shutdown_deadline: seconds the drain may take before in-flight items are
            cancelled and queued ones abandoned.
        task_timeout: default per-attempt timeout in seconds.
        thread_limit: how many sync work functions may run in threads at once.
        default_retry: the policy for items with none of their own.
        registry: an ``svcs.Registry`` for the scoped services.
        scope_factory: your own `ScopeFactory`, instead of *registry*.
        session_manager: the `SessionManager` (default: a new one).
        worker: an existing channel to consume (then *capacity*, *full_mode* and
            *enqueue_timeout* are the channel's own).
        channel: any `Channel` to consume instead, e.g. a durable one; the same
            as *worker*, of which it is the new name (pass one of the two).
        tasks: the named tasks a durable channel may run (`Task` objects, modules
            or dotted module names).
        on_drop: called with each item a full channel drops.
        on_dead_letter: called as ``(item, exception)`` when an item fails for good.
        on_abandoned: called once at shutdown with the items that did not finish.
        cleanup_interval: seconds between sweeps of expired sessions.
        cleanup_grace: seconds scope and session cleanups may still run once the
            shutdown deadline has passed.
        blocked_loop_threshold: seconds the event loop may be blocked (by an async
            work function making a blocking call) before a warning names the item;
            ``None`` turns the watchdog off.

    Raises:
        ValueError: an argument is out of range (the message names it).
        TypeError: an argument has the wrong type.
    """

    def __init__(
        self,
        consumers: int = 4,
        capacity: int = 1000,
        full_mode: FullMode | str = FullMode.WAIT,
        enqueue_timeout: float | None = None,
        shutdown_deadline: float = 30.0,
        task_timeout: float | None = None,
        thread_limit: int = 40,
        default_retry: RetryPolicy | None = None,
        registry: svcs.Registry | None = None,
        scope_factory: ScopeFactory | None = None,
        session_manager: SessionManager | None = None,
        worker: Channel | None = None,
        on_drop: Hook | None = None,
        on_dead_letter: Hook | None = None,
        on_abandoned: Hook | None = None,
        *,
        channel: Channel | None = None,
        tasks: Iterable[Any] = (),
        cleanup_interval: float = 60.0,
        cleanup_grace: float = 1.0,
        blocked_loop_threshold: float | None = 1.0,
    ) -> None:
        self._consumers = check_count(consumers, "consumers")
        self._shutdown_deadline = check_non_negative_seconds(shutdown_deadline, "shutdown_deadline")
        self._task_timeout = check_timeout(task_timeout, "task_timeout")
        self._thread_limit = check_count(thread_limit, "thread_limit")
        if default_retry is not None and not isinstance(default_retry, RetryPolicy):
            raise TypeError(f"default_retry must be a RetryPolicy or None, got {default_retry!r}")
        factory = choose_scope_factory(registry, scope_factory)
        if session_manager is not None and not isinstance(session_manager, SessionManager):
            raise TypeError(f"session_manager must be a SessionManager, got {session_manager!r}")
        self._sessions = session_manager if session_manager is not None else SessionManager()
        self._cleanup_interval = check_timeout(cleanup_interval, "cleanup_interval") or 60.0
        self._cleanup_grace = check_non_negative_seconds(cleanup_grace, "cleanup_grace")
        self._blocked_loop_threshold = check_timeout(
            blocked_loop_threshold, "blocked_loop_threshold"
        )
        check_hooks(on_drop=on_drop, on_dead_letter=on_dead_letter, on_abandoned=on_abandoned)
        self._task_registry = resolve_tasks(tuple(tasks))
        self._worker = choose_channel(
            worker, channel, capacity, full_mode, enqueue_timeout=enqueue_timeout, on_drop=on_drop
        )
        self._stop = StopToken()
        self._state = PoolState([None] * self._consumers)
        self._budget = CleanupBudget(self._cleanup_grace)
        self._items = ItemRunner(
            self._state,
            self._worker,
            self._sessions,
            factory,
            # A custom factory is user code: called when each attempt starts, so
            # that its failure fails the attempt. svcs containers are made on first use.
            eager_factory=scope_factory is not None,
            task_timeout=self._task_timeout,
            default_retry=default_retry,
            stop=self._stop,
            budget=self._budget,
            on_dead_letter=on_dead_letter,
        )
        self._drain = Drain(self._state, self._worker, self._stop, self._budget, on_abandoned)
        # lifecycle; anyio objects are made once a loop runs
        self._task_group: anyio.abc.TaskGroup | None = None
        self._runner: Detached | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._watchdog: LoopWatchdog | None = None
        watch_unstarted(self, self._state, self._worker)

    @classmethod
    def from_settings(cls, settings: PoolSettings | None = None, **overrides: Any) -> WorkerPool:
        """A pool configured from `PoolSettings` (environment, ``.env``, TOML).

        Args:
            settings: the settings; default ``PoolSettings()``, which reads them.
            **overrides: any constructor argument, over the settings.
        """
        return cls(**settings_arguments(settings, overrides))

    # -- properties ----------------------------------------------------------------

    @property
    def worker(self) -> Channel:
        """The channel the consumers take items from (hand it to producers)."""
        return self._worker

    @property
    def channel(self) -> Channel:
        """The channel in use (the same object as `worker`)."""
        return self._worker

    @property
    def tasks(self) -> Mapping[str, Any]:
        """The named tasks this pool runs from a durable channel, by name."""
        return self._task_registry

    @property
    def session_manager(self) -> SessionManager:
        """The pool's `SessionManager` (for requests that share sessions with items)."""
        return self._sessions

    @property
    def stopping(self) -> StopToken:
        """The `StopToken` passed to every work function; set when shutdown begins."""
        return self._stop

    @property
    def consumers(self) -> int:
        """How many consumers the pool runs."""
        return self._consumers

    @property
    def shutdown_deadline(self) -> float:
        """The default drain deadline in seconds."""
        return self._shutdown_deadline

    @property
    def running(self) -> bool:
        """True between start and the end of shutdown."""
        return self._state.running

    @property
    def report(self) -> DrainReport | None:
        """The `DrainReport`, once the pool has shut down."""
        return self._state.report

    def __repr__(self) -> str:
        state = "running" if self.running else ("shut down" if self.report else "idle")
        return f"<WorkerPool consumers={self._consumers} {state} {self._worker!r}>"

    # -- producers -----------------------------------------------------------------

    @cached_property
    def enqueue(self) -> Enqueue:
        """``await pool.enqueue(work, parent_session=None, *, retry=None, timeout=None,
        name=None, delay=None, key=None)``: queue *work* and return its `WorkItem`;
        see `BackgroundWorker.enqueue` (waits in ``WAIT`` mode when full).

        This is the channel's own ``enqueue``, looked up once per pool and then read
        as a plain attribute: a pool-level wrapper would add a Python call (about 5%
        of a no-op item's cost) to every item.

        Raises:
            TypeError: *work* is not a work function.
            PoolClosedError: shutdown has begun.
            QueueFullError: the channel is full and its mode says not to wait.
        """
        return self._worker.enqueue

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
        """Queue *work* without waiting; `QueueFullError` when full in ``WAIT`` mode."""
        if delay is None and key is None:
            return self._worker.enqueue_nowait(
                work, parent_session, retry=retry, timeout=timeout, name=name
            )
        return self._worker.enqueue_nowait(
            work, parent_session, retry=retry, timeout=timeout, name=name, delay=delay, key=key
        )

    def enqueue_threadsafe(
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
        """Queue *work* from a thread other than the event loop's (Django, Flask...).

        Blocks the calling thread the way `enqueue` waits, under the same full-mode
        rules, and returns the `WorkItem`.

        Raises:
            RuntimeError: called on the event loop's own thread, or the pool has not
                started.
            TypeError: *work* is not a work function.
            PoolClosedError: shutdown has begun.
            QueueFullError: the channel is full and its mode says not to wait.
        """
        check_work(work)
        if self._worker.closed:
            raise PoolClosedError("the pool is shutting down or shut down and accepts no more work")
        token = self._token
        if token is None:
            raise RuntimeError(
                "the pool is not running: start it (async with pool) before calling "
                "enqueue_threadsafe(), or use enqueue_nowait() on the event loop"
            )
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "enqueue_threadsafe() was called on the event loop's own thread, where it "
                "would block the loop; use 'await pool.enqueue(...)' or enqueue_nowait()"
            )
        call = partial(self.enqueue, work, parent_session, retry=retry, timeout=timeout, name=name)
        if delay is not None or key is not None:
            call = partial(call, delay=delay, key=key)
        return anyio.from_thread.run(call, token=token)

    async def join(self) -> None:
        """Wait until the channel is empty and no item is running."""
        await self._worker.join()

    def stats(self) -> PoolStats:
        """A `PoolStats` snapshot of counters and timings."""
        worker = self._worker
        state = self._state
        return PoolStats(
            consumers=self._consumers,
            busy=len(state.in_flight) - state.in_flight.count(None),
            queued=worker.qsize(),
            capacity=worker.capacity,
            enqueued=worker.enqueued_total,
            succeeded=state.succeeded,
            failed=state.failed,
            retried=state.retried,
            dead_lettered=state.dead_lettered,
            dropped=worker.dropped_total,
            rejected=worker.rejected_total,
            timed_out=state.timed_out,
            cancelled=len(state.cancelled),
            abandoned=len(state.abandoned),
            wait_time=state.wait_times.summary(),
            run_time=state.run_times.summary(),
            running=state.running,
            delivered=state.delivered,
            redelivered=state.redelivered,
            released=len(state.released),
            rescheduled=state.rescheduled,
        )

    def add_item_listener(self, listener: ItemListener) -> None:
        """Call ``listener(item, started_at, finished_at)`` after each item that ran.

        The times are ``time.monotonic()`` readings; the item's state is final by
        then. For instrumentation: a listener must be quick and must not block;
        its exceptions are logged. With no listener the pool pays nothing.
        """
        if not callable(listener):
            raise TypeError(f"an item listener must be callable, got {listener!r}")
        self._items.listeners.append(listener)

    def remove_item_listener(self, listener: ItemListener) -> None:
        """Stop calling *listener*; no effect if it was not added."""
        if listener in self._items.listeners:
            self._items.listeners.remove(listener)

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        state = self._state
        if state.started:
            raise RuntimeError("this WorkerPool was already started; a pool runs once")
        if state.report is not None or self._worker.closed:
            raise RuntimeError("this WorkerPool was shut down; make a new one")
        state.started = True
        await self._worker.open(self._task_registry)
        self._items.limiter = anyio.CapacityLimiter(self._thread_limit)
        state.consumers_done = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            # Detached: shutdown must be able to return without a consumer whose
            # work ignores cancellation, and a task group would wait for it.
            consumers = Consumers(
                self._consumers,
                state,
                self._worker,
                self._items,
                self._sessions,
                self._budget,
                self._cleanup_interval,
                self._spawn,
            )
            self._runner = await start_detached(
                consumers.run, name=f"workpool {id(self):#x}", on_crash=self._crashed
            )
        except BaseException as exc:
            state.running = False
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if self._blocked_loop_threshold is not None:
            self._watchdog = LoopWatchdog(
                self._blocked_loop_threshold,
                state.in_flight,
                loop_poster(),
                self._loop_thread,
                ItemRunner.frame_codes(),
            )
            self._watchdog.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        try:
            await self.shutdown()
            await self._leave_runner()
        finally:
            if self._watchdog is not None:
                self._watchdog.stop()
            if task_group is not None:
                self._task_group = None
                # The body's exception is not the task group's: passing it in would
                # wrap it in an ExceptionGroup. Let it propagate as it was.
                await task_group.__aexit__(None, None, None)

    async def shutdown(self, deadline: float | None = None) -> DrainReport:
        """Drain and stop the pool; return the `DrainReport`. Idempotent.

        Closes intake (``enqueue*`` raise `PoolClosedError`), sets the `StopToken`,
        lets the consumers finish what is queued; at the deadline, cancels in-flight
        items and takes queued ones out unstarted, and calls ``on_abandoned`` with
        every accepted item that did not finish. On a durable channel, the consumers
        stop claiming at once and items cancelled at the deadline are released to
        the store. The drain is shielded from outer cancellation and bounded by the
        deadline.

        Called again while a drain runs, with an explicit *deadline*, it brings the
        cut-off forward (never back) and waits for the same report: this is how a
        second SIGTERM stops at once.

        Args:
            deadline: seconds the drain may take; default the pool's
                ``shutdown_deadline``.

        Raises:
            ValueError: a negative deadline.
        """
        if deadline is None:
            return await self._drain.shutdown(self._shutdown_deadline, explicit=False)
        deadline = check_non_negative_seconds(deadline, "deadline")
        return await self._drain.shutdown(deadline, explicit=True)

    async def _leave_runner(self) -> None:
        """Let the consumers' task end; leave it behind if a consumer is stuck."""
        runner = self._runner
        if runner is None:
            return
        if not runner.done:
            done = self._state.consumers_done
            if done is not None and done.is_set():
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._cleanup_grace):
                    await runner.wait()
            if not runner.done:
                return  # the drain logged the stuck items; the task ends when they do
        self._runner = None

    def _crashed(self, error: BaseException) -> None:
        """The consumers' task died of a bug (never of a work item): fail the body of
        ``async with pool`` at once, as a failing task of its task group would."""
        task_group = self._task_group
        if task_group is None:
            return  # already left; the crash was logged

        async def fail() -> None:
            raise error

        task_group.start_soon(fail)

    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task_group = self._task_group
        if task_group is None:
            raise RuntimeError("the pool is not running")
        task_group.start_soon(func)
