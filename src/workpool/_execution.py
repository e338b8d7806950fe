"""Running one claimed item: its session, its attempts, its outcome.

`ItemRunner.process` is the whole life of an item in a consumer, top to bottom:

1. join the parent session, or get a new one: at once when the session manager
   has ``on_end`` hooks (they see every item's session), else lazily -- `ItemSession`;
2. run attempts, each in a fresh `Scope` under the per-attempt timeout
   (`ItemRunner._attempt`), waiting between them as the retry policy says; a wait
   too long for a durable channel's lease reschedules the item instead;
3. the outcome: succeeded, or failed for good (logged, ``on_dead_letter``);
4. always: release the session, record the timings, tell the item listeners, and
   settle the item with the channel exactly once.

The success path has no ``await`` layer beyond the work itself; rare paths
(failures, durable deliveries, cancellation) are helpers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, final

import anyio

from ._context import CURRENT_SCOPE
from ._hooks import Hook, call_hook
from ._item import ItemState, WorkItem, retry_of
from ._itemlog import log_failed, log_retry
from ._log import logger
from ._retry import RetryPolicy, RetryRun
from ._scope import Scope, ScopeFactory, close_scope_nowait, scope_log_ids
from ._seam import Settle
from ._session import ItemSession, LazyItemSessions, SessionManager, end_hooks
from ._syncwork import run_sync_work

if TYPE_CHECKING:
    from types import CodeType

    from ._drain import CleanupBudget
    from ._seam import Channel
    from ._state import PoolState
    from ._stop import StopToken

__all__ = ["ItemListener", "ItemRunner"]

#: Called as ``listener(item, started_at, finished_at)`` after each item that ran.
ItemListener = Callable[[WorkItem, float, float], None]

# An enum member costs about 60 ns to look up on its class (Python 3.11).
_RUNNING: Final = ItemState.RUNNING
_SUCCEEDED: Final = ItemState.SUCCEEDED
_FAILED: Final = ItemState.FAILED
_DONE: Final = Settle.DONE
_DEAD: Final = Settle.DEAD
_monotonic: Final = time.monotonic


@final
class ItemRunner:
    """Runs claimed items for a pool's consumers (one runner per pool).

    Args:
        state: the pool's shared counters.
        channel: where items are settled.
        sessions: the pool's `SessionManager`.
        factory: makes each attempt's service container.
        eager_factory: call *factory* when each attempt starts (a custom factory
            is user code whose failure fails the attempt), rather than on first use.
        task_timeout: the default per-attempt timeout.
        default_retry: the policy of items with none of their own.
        stop: the pool's `StopToken`, passed to every work function.
        budget: bounds the cleanups past the shutdown deadline.
        on_dead_letter: called as ``(item, exception)`` when an item fails for good.
    """

    __slots__ = (
        "_budget",
        "_channel",
        "_default_retry",
        "_eager_factory",
        "_end_hooks",
        "_factory",
        "_lazy",
        "_on_dead_letter",
        "_plain",
        "_run_append",
        "_sessions",
        "_state",
        "_stop",
        "_task_timeout",
        "_wait_append",
        "limiter",
        "listeners",
    )

    def __init__(
        self,
        state: PoolState,
        channel: Channel,
        sessions: SessionManager,
        factory: ScopeFactory,
        *,
        eager_factory: bool,
        task_timeout: float | None,
        default_retry: RetryPolicy | None,
        stop: StopToken,
        budget: CleanupBudget,
        on_dead_letter: Hook | None,
    ) -> None:
        self._state = state
        self._channel = channel
        self._sessions = sessions
        # Live: a hook added later counts from the next item on.
        self._end_hooks = end_hooks(sessions)
        self._lazy = LazyItemSessions(sessions)
        self._factory = factory
        self._eager_factory = eager_factory
        self._task_timeout = task_timeout
        # Attempts may run inline in `process`: no pool timeout, no eager container.
        self._plain = not eager_factory and task_timeout is None
        self._default_retry = default_retry
        self._stop = stop
        self._budget = budget
        self._on_dead_letter = on_dead_letter
        self.limiter: anyio.CapacityLimiter | None = None
        """Bounds the threads of sync work functions; set when the pool starts."""
        self.listeners: list[ItemListener] = []
        """Instrumentation (`WorkerPool.add_item_listener`); none costs nothing."""
        # The two timings of every item, recorded with the lists' own appends (C
        # calls) rather than `Timings.add` (a Python call each); the consumers fold
        # them at their clock check (`Timings.fold`).
        self._wait_append = state.wait_times.append
        self._run_append = state.run_times.append

    @staticmethod
    def frame_codes() -> frozenset[CodeType]:
        """The code of the runner's per-item frames, whose local ``item`` is the item
        they run: the loop watchdog looks for them on a blocked loop's stack."""
        return frozenset({ItemRunner.process.__code__, ItemRunner._attempt.__code__})

    async def process(self, item: WorkItem) -> None:
        """Run one item through its session, retry policy and attempts; settle it."""
        state = self._state
        item.state = _RUNNING
        started = _monotonic()
        self._wait_append(started - item.enqueued_at)
        lazy = self._lazy
        # The item's hold on its session: a real one at once when there is a parent
        # to join or an on_end hook to see it, else the runner's stand-in.
        slot: ItemSession | LazyItemSessions = lazy
        failure: BaseException | None = None
        retry_run: RetryRun | None = None
        finished = False
        # How the channel hears of the outcome; None once it has been told.
        outcome: Settle | None = _DONE
        try:
            if item.parent_session is not None or self._end_hooks:
                slot = ItemSession(item, self._sessions)
                failure = await slot.open(bool(self._end_hooks))
            attempt = item.attempts + 1  # attempts carried over by a durable channel
            error: BaseException | None
            while failure is None:
                item.attempts = attempt
                if item.is_async and item.timeout is None and self._plain:
                    # `_attempt` inline for its commonest case (no await layer): an
                    # async work function, no timeout, no container made up front.
                    error = None
                    try:
                        scope = Scope(item, attempt, slot, self._factory, None)
                    except Exception as exc:
                        _log_scope_failed(item, attempt)
                        error = exc
                    else:
                        token = CURRENT_SCOPE.set(scope)
                        try:
                            await item.work(scope, self._stop)  # type: ignore[misc]
                        except Exception as exc:
                            slot = lazy.take(item, slot)
                            slot.failed_scope_id = scope.id
                            error = exc
                        except BaseException as exc:
                            if not _works_own_cancelled_error(exc):
                                raise
                            slot = lazy.take(item, slot)
                            slot.failed_scope_id = scope.id
                            error = exc
                        finally:
                            CURRENT_SCOPE.reset(token)
                            if not close_scope_nowait(scope):
                                await self._close_scope(scope)
                else:
                    slot = lazy.take(item, slot)
                    error = await self._attempt(item, attempt, slot)
                if error is None:
                    break
                slot = lazy.take(item, slot)  # the logs and the next attempt need it
                if not isinstance(error, Exception):  # the work's own CancelledError
                    failure = error
                    break
                if retry_run is None:
                    policy = item.retry or retry_of(item.work) or self._default_retry
                    if policy is None:
                        failure = error
                        break
                    retry_run = RetryRun(policy, started, attempt)
                traceback = error.__traceback__
                try:
                    delay = await retry_run.next_delay(error)
                except Exception as final:
                    # tenacity re-raises the attempt's exception from frames that hold
                    # it; with its own traceback back, no cycle keeps it alive.
                    failure = final.with_traceback(traceback) if final is error else final
                    break
                else:
                    log_retry(item, slot, delay, error)
                finally:
                    del error, traceback
                if delay > self._channel.max_local_backoff:
                    self._reschedule(item, delay)
                    outcome = None
                    break
                # Always a checkpoint, so cancellation during a zero-second backoff
                # ends the item rather than starting another attempt.
                await anyio.sleep(delay)
                attempt += 1
                state.retried += 1
            finished = True
            if item.state is not _RUNNING:
                if outcome is not None:  # not rescheduled (_reschedule set QUEUED)
                    self._finished_late(item, failure)
            elif failure is None:
                item.state = _SUCCEEDED
                state.succeeded += 1
            else:
                # A durable channel is told at once (with the error), in _fail.
                outcome = None if self._channel.durable else _DEAD
                slot = lazy.take(item, slot)
                await self._fail(item, slot, failure)
        except BaseException:
            if not finished and item.state is _RUNNING:
                outcome = self._cancelled(item)
            raise
        finally:
            failure = error = None  # this frame is in their tracebacks: hold neither
            if retry_run is not None:
                retry_run.close()
            if lazy.made and slot is lazy:  # the work may have read its session
                slot = lazy.made.pop(item, slot)
            if slot.held:
                await self._release_session(slot)  # type: ignore[arg-type]
            finished_at = _monotonic()
            self._run_append(finished_at - started)  # folded by the consumers
            if self.listeners:
                self._notify_listeners(item, started, finished_at)
            if outcome is not None:
                self._channel.settle(item, outcome)

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
            _log_scope_failed(item, attempt)
            if container is not None:
                # made for a scope that could not be (its session had ended): close it
                await self._close_scope(Scope(item, attempt, None, None, container))
            return exc
        token = CURRENT_SCOPE.set(scope)
        deadline: anyio.CancelScope | None = None
        try:
            timeout = item.timeout or self._task_timeout
            if timeout is None:
                if item.is_async:
                    await item.work(scope, self._stop)  # type: ignore[misc]
                else:
                    await run_sync_work(item.work, scope, self._stop, self.limiter)
            else:
                with anyio.fail_after(timeout) as deadline:
                    if item.is_async:
                        await item.work(scope, self._stop)  # type: ignore[misc]
                    else:
                        await run_sync_work(item.work, scope, self._stop, self.limiter)
        except Exception as exc:
            if deadline is not None and deadline.cancel_called and isinstance(exc, TimeoutError):
                self._state.timed_out += 1
            slot.failed_scope_id = scope.id
            return exc
        except BaseException as exc:
            if _works_own_cancelled_error(exc):
                slot.failed_scope_id = scope.id
                return exc
            raise
        finally:
            CURRENT_SCOPE.reset(token)
            if not close_scope_nowait(scope):
                await self._close_scope(scope)
        return None

    # -- outcomes off the success path ------------------------------------------------

    async def _fail(self, item: WorkItem, slot: ItemSession, failure: BaseException) -> None:
        """The item failed for good: log it, call ``on_dead_letter``, and tell a
        durable channel at once (it formats the error and keeps none of it)."""
        item.state = _FAILED
        self._state.failed += 1
        log_failed(item, slot, failure)
        try:
            if self._on_dead_letter is not None:
                self._state.dead_lettered += 1
                await call_hook(self._on_dead_letter, "on_dead_letter", item, failure)
        finally:
            if self._channel.durable:
                self._channel.settle(item, _DEAD, reason="failed", error=failure)
            del failure

    async def take_delivery(self, item: WorkItem) -> bool:
        """Count a delivery from a durable channel; dead-letter it at once if the
        channel rejected it at claim (True: do not run it)."""
        state = self._state
        state.delivered += 1
        if item.deliveries > 1:
            state.redelivered += 1
        rejection = item.rejection
        if rejection is None:
            return False
        reason, error = rejection
        item.rejection = None  # nothing keeps the exception once the hook returned
        del rejection
        item.state = _FAILED
        state.failed += 1
        logger.error(
            "%s was dead-lettered without running (%s): %s: %s",
            item.name,
            reason,
            type(error).__name__,
            error,
            extra={"work_name": item.name, "item_id": item.id, "reason": reason},
        )
        try:
            if self._on_dead_letter is not None:
                state.dead_lettered += 1
                await call_hook(self._on_dead_letter, "on_dead_letter", item, error)
        finally:
            self._channel.settle(item, _DEAD, reason=reason, error=error)
            del error
        return True

    def _reschedule(self, item: WorkItem, delay: float) -> None:
        """The next retry of a durable item waits longer than the channel lets a
        consumer hold it: put it back in the store, due after *delay*."""
        item.state = ItemState.QUEUED
        self._state.rescheduled += 1
        logger.info(
            "%s rescheduled: attempt %d in %.1f s",
            item.name,
            item.attempts + 1,
            delay,
            extra={"work_name": item.name, "item_id": item.id, "attempt": item.attempts},
        )
        self._channel.settle(item, Settle.RESCHEDULED, delay=delay)

    def _cancelled(self, item: WorkItem) -> Settle | None:
        """The item was cancelled in flight (the shutdown deadline): a durable one is
        handed back to its store (released), an in-memory one is reported cancelled."""
        if self._channel.durable:
            item.state = ItemState.QUEUED
            self._state.released.append(item)
            self._channel.settle(item, Settle.RELEASED)
            return None
        item.state = ItemState.CANCELLED
        self._state.cancelled.append(item)
        return _DEAD

    def _finished_late(self, item: WorkItem, failure: BaseException | None) -> None:
        """An item shutdown gave up on has ended: it stays reported as cancelled."""
        logger.warning(
            "%s ended %s after shutdown had given up on it; it stays reported as cancelled",
            item.name,
            "successfully" if failure is None else f"with {type(failure).__name__}",
            extra={"work_name": item.name, "item_id": item.id},
        )

    def _notify_listeners(self, item: WorkItem, started: float, finished: float) -> None:
        for listener in self.listeners:
            try:
                listener(item, started, finished)
            except Exception:
                logger.exception("item listener %r raised; ignored", listener)

    # -- cleanups ---------------------------------------------------------------------

    async def _close_scope(self, scope: Scope) -> None:
        with self._budget.shield() as shield:
            try:
                await scope.aclose()
            except Exception:
                logger.exception(
                    "cleanup of the scope of %s (attempt %d) failed",
                    scope.item.name,
                    scope.attempt,
                    extra=scope_log_ids(scope),
                )
        if shield.cancelled_caught:
            logger.error(
                "cleanup of the scope of %s was cut off %.1f s after the shutdown deadline",
                scope.item.name,
                self._budget.grace,
                extra=scope_log_ids(scope),
            )

    async def _release_session(self, slot: ItemSession) -> None:
        session = slot.session
        if session is None:
            return
        with self._budget.shield():
            try:
                await slot.manager.release(session, slot.item.id)
            except Exception:
                logger.exception(
                    "releasing session %s of %s failed",
                    session.id,
                    slot.item.name,
                    extra={"work_name": slot.item.name, "session_id": session.id},
                )


def _log_scope_failed(item: WorkItem, attempt: int) -> None:
    logger.exception(
        "could not create the scope of %s (attempt %d)",
        item.name,
        attempt,
        extra={"work_name": item.name, "attempt": attempt},
    )


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
