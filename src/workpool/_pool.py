"""WorkerPool: N consumers over one channel, the per-item lifecycle, and the drain."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from contextlib import contextmanager
from contextvars import Context, copy_context
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ._channel import BackgroundWorker, Channel, FullMode
from ._checks import check_count, check_non_negative_seconds, check_timeout
from ._context import _current_scope, run_in_context
from ._detached import Detached, start_detached
from ._exceptions import PoolClosedError
from ._hooks import Hook, call_hook
from ._item import ItemState, Work, WorkItem, check_work, retry_of
from ._log import logger
from ._retry import RetryPolicy, RetryRun
from ._scope import ItemSession, Scope, ScopeFactory, svcs_scope_factory
from ._session import Session, SessionManager, release_parent
from ._stats import DrainReport, PoolStats, Timings
from ._stop import StopToken
from ._svcs import svcs
from ._watchdog import LoopWatchdog, loop_poster

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterator
    from types import TracebackType

    from ._settings import PoolSettings

__all__ = ["WorkerPool"]

# Consumers take items without yielding while the channel has them: a checkpoint is
# a trip through the event loop, and a producer that outpaces the consumers only
# gets to refill the channel then. Every _SLICE_CHECK items, a consumer reads the
# clock, and checkpoints once _SLICE_SECONDS have passed since its last checkpoint
# or wait for an item: quick items get long slices (~150 no-op items), slow ones
# short, and no consumer starves the loop.
_SLICE_CHECK = 8
_SLICE_SECONDS = 0.0005

# An enum member costs about 60 ns to look up on its class (Python 3.11).
_RUNNING: Final = ItemState.RUNNING
_SUCCEEDED: Final = ItemState.SUCCEEDED
_FAILED: Final = ItemState.FAILED
_CANCELLED: Final = ItemState.CANCELLED


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
        self._default_retry = default_retry
        if registry is not None and scope_factory is not None:
            raise ValueError("pass registry or scope_factory, not both")
        if registry is not None and not isinstance(registry, svcs.Registry):
            raise TypeError(f"registry must be an svcs.Registry, got {registry!r}")
        if scope_factory is not None and not callable(scope_factory):
            raise TypeError(f"scope_factory must be callable, got {scope_factory!r}")
        # A custom factory is user code: call it when each attempt starts so that its
        # failure fails the attempt. svcs containers are made on first use instead.
        self._eager_factory = scope_factory is not None
        self._factory: ScopeFactory = scope_factory or svcs_scope_factory(
            registry if registry is not None else svcs.Registry()
        )
        if session_manager is not None and not isinstance(session_manager, SessionManager):
            raise TypeError(f"session_manager must be a SessionManager, got {session_manager!r}")
        self._sessions = session_manager if session_manager is not None else SessionManager()
        self._cleanup_interval = check_timeout(cleanup_interval, "cleanup_interval") or 60.0
        self._cleanup_grace = check_non_negative_seconds(cleanup_grace, "cleanup_grace")
        self._blocked_loop_threshold = check_timeout(
            blocked_loop_threshold, "blocked_loop_threshold"
        )
        self._watchdog: LoopWatchdog | None = None
        for argument, hook in (
            ("on_drop", on_drop),
            ("on_dead_letter", on_dead_letter),
            ("on_abandoned", on_abandoned),
        ):
            if hook is not None and not callable(hook):
                raise TypeError(f"{argument} must be callable, got {hook!r}")
        if worker is None:
            self._worker: Channel = BackgroundWorker(
                capacity, full_mode, enqueue_timeout=enqueue_timeout, on_drop=on_drop
            )
        else:
            if not isinstance(worker, Channel):
                raise TypeError(f"worker must be a BackgroundWorker (or a Channel), got {worker!r}")
            if capacity != 1000 or full_mode != FullMode.WAIT or enqueue_timeout is not None:
                raise ValueError(
                    "capacity, full_mode and enqueue_timeout belong to the worker passed as "
                    "worker=; configure them on the BackgroundWorker itself"
                )
            self._worker = worker
            if on_drop is not None:
                add = getattr(worker, "_add_drop_hook", None)
                if add is None:
                    raise ValueError("this channel takes no on_drop hook from the pool")
                add(on_drop)
        self._on_dead_letter = on_dead_letter
        self._on_abandoned = on_abandoned
        self._stop = StopToken()

        # counters (lifetime totals)
        self._busy = 0
        self._succeeded = 0
        self._failed = 0
        self._retried = 0
        self._dead_lettered = 0
        self._timed_out = 0
        self._cancelled_items: list[WorkItem] = []
        self._abandoned_items: list[WorkItem] = []
        self._wait_times = Timings()
        self._run_times = Timings()

        # lifecycle; anyio objects are made once a loop runs
        self._started = False
        self._running = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._runner: Detached | None = None
        self._consumer_scope: anyio.CancelScope | None = None
        self._sweeper_scope: anyio.CancelScope | None = None
        self._consumers_done: anyio.Event | None = None
        self._live_consumers = 0
        self._in_flight: list[WorkItem | None] = [None] * self._consumers
        self._cleanup_scopes: set[anyio.CancelScope] = set()
        self._cut_off_at: float | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._shutdown_done: anyio.Event | None = None
        self._report: DrainReport | None = None
        self._drain_wait: anyio.CancelScope | None = None
        # Instrumentation (workpool.integrations.otel): called after each item that ran.
        self._item_listeners: list[Callable[[WorkItem, float, float], None]] = []

    @classmethod
    def from_settings(cls, settings: PoolSettings | None = None, **overrides: Any) -> WorkerPool:
        """A pool configured from `PoolSettings` (environment, ``.env``, TOML).

        Args:
            settings: the settings; default ``PoolSettings()``, which reads them.
            **overrides: any constructor argument, over the settings.
        """
        if settings is None:
            from ._settings import PoolSettings

            settings = PoolSettings()
        kwargs: dict[str, Any] = {
            "consumers": settings.consumers,
            "capacity": settings.capacity,
            "full_mode": settings.full_mode,
            "enqueue_timeout": settings.enqueue_timeout,
            "shutdown_deadline": settings.shutdown_deadline,
            "task_timeout": settings.task_timeout,
            "thread_limit": settings.thread_limit,
            "default_retry": settings.retry.policy(),
            "cleanup_interval": settings.session.cleanup_interval,
            "blocked_loop_threshold": settings.blocked_loop_threshold,
        }
        if "worker" in overrides:
            for key in ("capacity", "full_mode", "enqueue_timeout"):
                kwargs.pop(key)
        if "session_manager" not in overrides:
            kwargs["session_manager"] = SessionManager(settings.session.default_duration)
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- properties ----------------------------------------------------------------

    @property
    def worker(self) -> Channel:
        """The channel the consumers take items from (hand it to producers)."""
        return self._worker

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
        return self._running

    @property
    def report(self) -> DrainReport | None:
        """The `DrainReport`, once the pool has shut down."""
        return self._report

    def __repr__(self) -> str:
        state = "running" if self._running else ("shut down" if self._report else "idle")
        return f"<WorkerPool consumers={self._consumers} {state} {self._worker!r}>"

    # -- producers -----------------------------------------------------------------

    async def enqueue(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> WorkItem:
        """Queue *work*; see `BackgroundWorker.enqueue` (waits in ``WAIT`` mode when full).

        Raises:
            TypeError: *work* is not a work function.
            PoolClosedError: shutdown has begun.
            QueueFullError: the channel is full and its mode says not to wait.
        """
        return await self._worker.enqueue(
            work, parent_session, retry=retry, timeout=timeout, name=name
        )

    def enqueue_nowait(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> WorkItem:
        """Queue *work* without waiting; `QueueFullError` when full in ``WAIT`` mode."""
        return self._worker.enqueue_nowait(
            work, parent_session, retry=retry, timeout=timeout, name=name
        )

    def enqueue_threadsafe(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
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
        call = partial(
            self._worker.enqueue, work, parent_session, retry=retry, timeout=timeout, name=name
        )
        return anyio.from_thread.run(call, token=token)

    async def join(self) -> None:
        """Wait until the channel is empty and no item is running."""
        await self._worker.join()

    def stats(self) -> PoolStats:
        """A `PoolStats` snapshot of counters and timings."""
        worker = self._worker
        return PoolStats(
            consumers=self._consumers,
            busy=self._busy,
            queued=worker.qsize(),
            capacity=worker.capacity,
            enqueued=worker.enqueued_total,
            succeeded=self._succeeded,
            failed=self._failed,
            retried=self._retried,
            dead_lettered=self._dead_lettered,
            dropped=worker.dropped_total,
            rejected=worker.rejected_total,
            timed_out=self._timed_out,
            cancelled=len(self._cancelled_items),
            abandoned=len(self._abandoned_items),
            wait_time=self._wait_times.summary(),
            run_time=self._run_times.summary(),
            running=self._running,
        )

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError("this WorkerPool was already started; a pool runs once")
        if self._report is not None or self._worker.closed:
            raise RuntimeError("this WorkerPool was shut down; make a new one")
        self._started = True
        self._limiter = anyio.CapacityLimiter(self._thread_limit)
        self._consumers_done = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            # Detached: shutdown must be able to return without a consumer whose
            # work ignores cancellation, and a task group would wait for it.
            self._runner = await start_detached(
                self._run, name=f"workpool {id(self):#x}", on_crash=self._crashed
            )
        except BaseException as exc:
            self._running = False
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if self._blocked_loop_threshold is not None:
            self._watchdog = LoopWatchdog(
                self._blocked_loop_threshold, self._in_flight, loop_poster(), self._loop_thread
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

    async def _leave_runner(self) -> None:
        """Let the consumers' task end; leave it behind if a consumer is stuck."""
        runner = self._runner
        if runner is None:
            return
        if not runner.done:
            done = self._consumers_done
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

    async def _run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        worker = self._worker
        set_spawner = getattr(worker, "_set_spawner", None)
        # Shielded: an outer cancellation (of the body of `async with pool`, or of
        # the task group around it) must not cancel the consumers, or queued items
        # would never run; __aexit__ drains, and the deadline cancels this scope.
        with anyio.CancelScope(shield=True) as consumer_scope:
            self._consumer_scope = consumer_scope
            async with anyio.create_task_group() as consumers:
                self._live_consumers = self._consumers
                for index in range(self._consumers):
                    consumers.start_soon(self._consume, index, name=f"workpool consumer {index}")
                with anyio.CancelScope() as sweeper_scope:
                    self._sweeper_scope = sweeper_scope
                    if set_spawner is not None:
                        set_spawner(self._spawn)
                    self._running = True
                    task_status.started()
                    await self._sweep()
        if set_spawner is not None:
            set_spawner(None)

    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task_group = self._task_group
        if task_group is None:
            raise RuntimeError("the pool is not running")
        task_group.start_soon(func)

    async def _sweep(self) -> None:
        while True:
            await anyio.sleep(self._cleanup_interval)
            with self._cleanup_shield() as shield:
                try:
                    await self._sessions.sweep_expired()
                except Exception:
                    logger.exception("sweeping expired sessions failed")
            if shield.cancelled_caught:
                logger.error(
                    "sweeping expired sessions was cut off %.1f s after the consumers stopped "
                    "(a session on_end hook hangs)",
                    self._cleanup_grace,
                )

    def _consumer_exited(self) -> None:
        self._live_consumers -= 1
        if self._live_consumers == 0:
            # A sweep still running (its on_end hooks) gets the grace, no more.
            self._cut_off_cleanups(anyio.current_time())
            if self._sweeper_scope is not None:
                self._sweeper_scope.cancel()
            if self._consumers_done is not None:
                self._consumers_done.set()

    async def _consume(self, index: int) -> None:
        # Each item runs in a copy of this context, so that a variable it sets is not
        # seen by the next. Items run one after another inside the same copy while
        # they leave it as they found it; after one that changed it, the next ones
        # get a fresh copy. (Entering a context per item would cost more than the
        # rest of a quick item's lifecycle.)
        base = copy_context()
        try:
            while True:
                context = base.copy()
                if await run_in_context(self._consume_in(index, context, base), context):
                    return
        finally:
            self._consumer_exited()

    async def _consume_in(self, index: int, context: Context, base: Context) -> bool:
        """Run items inside *context* until the channel is closed and empty (True),
        or until an item leaves *context* changed (False)."""
        worker = self._worker
        in_flight = self._in_flight
        monotonic = time.monotonic
        taken = 0
        slice_started = monotonic()
        while True:
            if taken >= _SLICE_CHECK:
                taken = 0
                if monotonic() - slice_started >= _SLICE_SECONDS:
                    await anyio.lowlevel.checkpoint()
                    slice_started = monotonic()
            try:
                item = worker.dequeue_nowait()
            except anyio.WouldBlock:
                try:
                    item = await worker.dequeue()
                except PoolClosedError:
                    return True
                slice_started = monotonic()
            except PoolClosedError:
                return True
            taken += 1
            in_flight[index] = item
            try:
                await self._process(item)
            finally:
                in_flight[index] = None
            if context != base:
                return False

    # -- one item ------------------------------------------------------------------

    async def _process(self, item: WorkItem) -> None:
        """Run one item through its session, retry policy and attempts."""
        item.state = _RUNNING
        self._busy += 1
        started = time.monotonic()
        self._wait_times.add(started - item.enqueued_at)
        slot = ItemSession(item, self._sessions)
        failure: BaseException | None = None
        retry_run: RetryRun | None = None
        finished = False
        try:
            parent = item.parent_session
            if parent is not None:
                failure = self._join_parent(slot, parent)
                if item._parent_held:  # a session of another manager: not joined
                    await release_parent(item)
            attempt = 1
            while failure is None:
                item.attempts = attempt
                error = await self._attempt(item, attempt, slot)
                if error is None:
                    break
                if not isinstance(error, Exception):  # the work's own CancelledError
                    failure = error
                    break
                if retry_run is None:
                    policy = item.retry or retry_of(item.work) or self._default_retry
                    if policy is None:
                        failure = error
                        break
                    retry_run = RetryRun(policy, started)
                traceback = error.__traceback__
                try:
                    delay = await retry_run.next_delay(error)
                except Exception as final:
                    # tenacity re-raises the attempt's exception from frames that hold
                    # it; with its own traceback back, no cycle keeps it alive.
                    failure = final.with_traceback(traceback) if final is error else final
                    break
                finally:
                    del error, traceback
                # Always a checkpoint, so cancellation during a zero-second backoff
                # ends the item rather than starting another attempt.
                await anyio.sleep(delay)
                attempt += 1
                self._retried += 1
            finished = True
            if item.state is not _RUNNING:
                self._finished_late(item, failure)
            elif failure is None:
                item.state = _SUCCEEDED
                self._succeeded += 1
            else:
                item.state = _FAILED
                self._failed += 1
                self._log_failure(item, slot, failure)
                if self._on_dead_letter is not None:
                    self._dead_lettered += 1
                    await call_hook(self._on_dead_letter, "on_dead_letter", item, failure)
        except BaseException:
            if not finished and item.state is _RUNNING:
                item.state = _CANCELLED
                self._cancelled_items.append(item)
            raise
        finally:
            failure = None
            if retry_run is not None:
                retry_run.close()
            self._busy -= 1
            if slot._joined:  # slot.held, without the property call
                await self._release_session(slot)
            finished_at = time.monotonic()
            self._run_times.add(finished_at - started)
            if self._item_listeners:
                self._notify_item_listeners(item, started, finished_at)
            self._worker.task_done(item)

    def _finished_late(self, item: WorkItem, failure: BaseException | None) -> None:
        """An item shutdown gave up on has ended: it stays reported as cancelled."""
        logger.warning(
            "%s ended %s after shutdown had given up on it; it stays reported as cancelled",
            item.name,
            "successfully" if failure is None else f"with {type(failure).__name__}",
            extra={"work_name": item.name, "item_id": item.id},
        )

    def _add_item_listener(self, listener: Callable[[WorkItem, float, float], None]) -> None:
        """Call ``listener(item, started_at, finished_at)`` after each item that ran.

        The times are ``time.monotonic()`` readings; the item's state is final by
        then. For instrumentation: a listener must be quick and must not block;
        its exceptions are logged. With no listener the pool pays nothing.
        """
        self._item_listeners.append(listener)

    def _remove_item_listener(self, listener: Callable[[WorkItem, float, float], None]) -> None:
        if listener in self._item_listeners:
            self._item_listeners.remove(listener)

    def _notify_item_listeners(self, item: WorkItem, started: float, finished: float) -> None:
        for listener in self._item_listeners:
            try:
                listener(item, started, finished)
            except Exception:
                logger.exception("item listener %r raised; ignored", listener)

    def _join_parent(self, slot: ItemSession, parent: Session) -> Exception | None:
        try:
            # Held since the channel accepted the item (see _session.hold_parent):
            # still the request's session unless someone ended it meanwhile.
            if (
                not parent.ended
                and parent._manager is self._sessions
                and (slot.item._parent_held or self._sessions.is_active(parent))
            ):
                slot.item._parent_held = False  # the hold passes to the running item
                slot.join(parent)
            else:
                logger.warning(
                    "parent session %s of %s is not active (ended, expired or unknown); "
                    "the item runs in a new session",
                    parent.id,
                    slot.item.name,
                    extra={"work_name": slot.item.name, "session_id": parent.id},
                )
        except Exception as exc:
            logger.exception(
                "could not join session %s for %s",
                parent.id,
                slot.item.name,
                extra={"work_name": slot.item.name, "session_id": parent.id},
            )
            return exc
        return None

    async def _attempt(
        self, item: WorkItem, attempt: int, slot: ItemSession
    ) -> BaseException | None:
        """Run one attempt in a fresh scope; return its exception, or None on success."""
        container = None
        try:
            if self._eager_factory:
                container = self._factory()
            scope = Scope(item, attempt, slot, self._factory, container)
        except Exception as exc:
            logger.exception(
                "could not create the scope of %s (attempt %d)",
                item.name,
                attempt,
                extra={"work_name": item.name, "attempt": attempt},
            )
            if container is not None:
                # made for a scope that could not be (its session had ended): close it
                await self._close_scope(Scope(item, attempt, None, None, container))
            return exc
        token = _current_scope.set(scope)
        deadline: anyio.CancelScope | None = None
        try:
            timeout = item.timeout or self._task_timeout
            if timeout is None:
                if item._is_async:
                    await item.work(scope, self._stop)  # type: ignore[misc]
                else:
                    await self._run_sync(item, scope)
            else:
                with anyio.fail_after(timeout) as deadline:
                    if item._is_async:
                        await item.work(scope, self._stop)  # type: ignore[misc]
                    else:
                        await self._run_sync(item, scope)
        except Exception as exc:
            if deadline is not None and deadline.cancel_called and isinstance(exc, TimeoutError):
                self._timed_out += 1
            return exc
        except BaseException as exc:
            if _works_own_cancelled_error(exc):
                return exc
            raise
        finally:
            _current_scope.reset(token)
            if scope._container is not None:  # scope.needs_async_close
                await self._close_scope(scope)
            else:
                scope._close_sync()
        return None

    async def _run_sync(self, item: WorkItem, scope: Scope) -> None:
        result = await anyio.to_thread.run_sync(
            _call_in_thread,
            item.work,
            scope,
            self._stop,
            limiter=self._limiter,
            abandon_on_cancel=True,
        )
        if type(result) is _Awaitable:
            # e.g. lambda scope, stopping: send(order): run the coroutine it made
            await result.awaitable
        elif type(result) is _Raised:
            error, result.error = result.error, None
            del result
            try:
                raise error  # type: ignore[misc]
            finally:
                del error  # this frame is in the traceback: hold nothing of it

    @contextmanager
    def _cleanup_shield(self) -> Iterator[anyio.CancelScope]:
        """Shield a cleanup from cancellation, but not past the shutdown deadline: the
        shield is registered so that `_cut_off_cleanups` can give it the grace, no more.
        ``cancelled_caught`` on the yielded scope tells that it was cut off."""
        shield = anyio.CancelScope(shield=True)
        if self._cut_off_at is not None:
            shield.deadline = self._cut_off_at + self._cleanup_grace
        self._cleanup_scopes.add(shield)
        try:
            with shield:
                yield shield
        finally:
            self._cleanup_scopes.discard(shield)

    async def _close_scope(self, scope: Scope) -> None:
        with self._cleanup_shield() as shield:
            try:
                await scope.aclose()
            except Exception:
                logger.exception(
                    "cleanup of the scope of %s (attempt %d) failed",
                    scope.item.name,
                    scope.attempt,
                    extra=_ids(scope),
                )
        if shield.cancelled_caught:
            logger.error(
                "cleanup of the scope of %s was cut off %.1f s after the shutdown deadline",
                scope.item.name,
                self._cleanup_grace,
                extra=_ids(scope),
            )

    async def _release_session(self, slot: ItemSession) -> None:
        session = slot.session
        if session is None:
            return
        with self._cleanup_shield():
            try:
                await slot.manager.release(session, slot.item.id)
            except Exception:
                logger.exception(
                    "releasing session %s of %s failed",
                    session.id,
                    slot.item.name,
                    extra={"work_name": slot.item.name, "session_id": session.id},
                )

    def _log_failure(self, item: WorkItem, slot: ItemSession, exc: BaseException) -> None:
        session = slot.session
        logger.error(
            "%s failed for good after %d attempt%s: %s: %s",
            item.name,
            item.attempts,
            "" if item.attempts == 1 else "s",
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={
                "work_name": item.name,
                "attempt": item.attempts,
                "item_id": item.id,
                "scope_id": None,
                "session_id": session.id if session is not None else None,
            },
        )

    # -- shutdown ------------------------------------------------------------------

    async def shutdown(self, deadline: float | None = None) -> DrainReport:
        """Drain and stop the pool; return the `DrainReport`. Idempotent.

        Closes intake (``enqueue*`` raise `PoolClosedError`), sets the `StopToken`,
        lets the consumers finish what is queued; at the deadline, cancels in-flight
        items and takes queued ones out unstarted, and calls ``on_abandoned`` with
        every accepted item that did not finish. The drain is shielded from outer
        cancellation and bounded by the deadline.

        Called again while a drain runs, with an explicit *deadline*, it brings the
        cut-off forward (never back) and waits for the same report: this is how a
        second SIGTERM stops at once.

        Args:
            deadline: seconds the drain may take; default the pool's
                ``shutdown_deadline``.

        Raises:
            ValueError: a negative deadline.
        """
        explicit = deadline is not None
        deadline = (
            self._shutdown_deadline
            if deadline is None
            else check_non_negative_seconds(deadline, "deadline")
        )
        if self._report is not None:
            await anyio.lowlevel.checkpoint()
            return self._report
        if self._shutdown_done is not None:
            wait = self._drain_wait
            if explicit and wait is not None:
                wait.deadline = min(wait.deadline, anyio.current_time() + deadline)
            await self._shutdown_done.wait()
            assert self._report is not None
            return self._report
        self._shutdown_done = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                report = self._report = await self._drain(deadline)
        finally:
            self._shutdown_done.set()
        return report

    async def _drain(self, deadline: float) -> DrainReport:
        started = anyio.current_time()
        self._worker.close()
        self._stop.set()
        deadline_hit = False
        done = self._consumers_done
        if self._running and done is not None:
            wait = self._drain_wait = anyio.move_on_after(deadline)
            with wait:
                await done.wait()
            if not done.is_set():
                deadline_hit = True
                self._abandon_queued()
                self._cut_off(anyio.current_time())
                with anyio.move_on_after(self._cleanup_grace + 0.5):
                    await done.wait()
                if not done.is_set():
                    stuck = [item for item in self._in_flight if item is not None]
                    logger.error(
                        "%d consumer(s) did not stop within %.1f s of the shutdown deadline: "
                        "their work ignores cancellation (%s); reported as cancelled and "
                        "left running",
                        self._live_consumers,
                        self._cleanup_grace + 0.5,
                        ", ".join(item.name for item in stuck),
                    )
                    for item in stuck:
                        if not item.state.finished:
                            item.state = ItemState.CANCELLED
                            self._cancelled_items.append(item)
        if self._worker.qsize():
            deadline_hit = deadline_hit or self._running
            self._abandon_queued()
        self._running = False
        for item in self._abandoned_items:
            if item._parent_held:  # it will never run: let its parent session go
                await release_parent(item)
        unfinished = [*self._cancelled_items, *self._abandoned_items]
        if unfinished and self._on_abandoned is not None:
            # The hook may use what is left of the deadline, plus the grace; no more.
            drain_wait = self._drain_wait
            until = drain_wait.deadline if drain_wait is not None else started + deadline
            with anyio.move_on_at(max(until, anyio.current_time()) + self._cleanup_grace) as hook:
                await call_hook(self._on_abandoned, "on_abandoned", unfinished)
            if hook.cancelled_caught:
                logger.error(
                    "the on_abandoned hook was cut off %.1f s after the shutdown deadline",
                    self._cleanup_grace,
                )
        report = DrainReport(
            succeeded=self._succeeded,
            failed=self._failed,
            cancelled=tuple(self._cancelled_items),
            abandoned=tuple(self._abandoned_items),
            elapsed=anyio.current_time() - started,
            deadline_hit=deadline_hit,
            dropped=self._worker.dropped_total,
        )
        log = logger.warning if unfinished else logger.info
        log(
            "pool shut down in %.3f s: %d succeeded, %d failed, %d dropped, %d cancelled, %d abandoned",
            report.elapsed,
            report.succeeded,
            report.failed,
            report.dropped,
            len(report.cancelled),
            len(report.abandoned),
        )
        return report

    def _cut_off_cleanups(self, now: float) -> None:
        for shield in self._cleanup_scopes:
            shield.deadline = min(shield.deadline, now + self._cleanup_grace)

    def _abandon_queued(self) -> None:
        for item in self._worker.take_all():
            item.state = ItemState.ABANDONED
            self._abandoned_items.append(item)

    def _cut_off(self, now: float) -> None:
        """The deadline has passed: cancel in-flight items, bound running cleanups."""
        self._cut_off_at = now
        self._cut_off_cleanups(now)
        if self._consumer_scope is not None:
            self._consumer_scope.cancel()


@final
class _Awaitable:
    """What a sync work function returned that must be awaited on the loop, boxed:
    trio refuses a coroutine as the return value of a thread."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


@final
class _Raised:
    """What a sync work function raised, handed back from its thread rather than
    raised there: raised through the thread runner's frames, the exception would be
    kept alive by them (frame -> future -> exception -> traceback -> frame)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error


def _call_in_thread(work: Work, scope: Scope, stopping: StopToken) -> object:
    try:
        result = work(scope, stopping)
    except Exception as exc:
        return _Raised(exc)
    if inspect.isawaitable(result):
        return _Awaitable(result)
    return result


def _works_own_cancelled_error(exc: BaseException) -> bool:
    """Whether *exc* is a ``CancelledError`` the work raised while its task was not
    being cancelled (it awaited a future or task that was cancelled, say): a failure
    of the work like any other, not a cancellation of the consumer."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio (trio): it cannot be a cancellation
        return True
    return task is not None and task.cancelling() == 0


def _ids(scope: Scope) -> dict[str, Any]:
    slot_session = scope._slot.session if scope._slot is not None else None
    return {
        "work_name": scope.item.name,
        "attempt": scope.attempt,
        "scope_id": scope.id,
        "session_id": slot_session.id if slot_session is not None else None,
    }
