"""Shutdown: the drain within its deadline, and the budget of cleanups past it.

The drain closes intake, sets the `StopToken`, lets the consumers finish what is
queued, and at the deadline cancels what still runs and takes queued items out
unstarted; it then closes the channel and writes the `DrainReport`.

Cleanups (closing a scope, releasing a session, sweeping expired sessions) run
shielded from cancellation, but a hanging one must not hold shutdown: the
`CleanupBudget` registers each shield so that, once the deadline has passed, it
gets a short grace and is then cut off.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel

from ._hooks import Hook, call_hook
from ._item import ItemState
from ._log import logger
from ._session import release_parent
from ._stats import DrainReport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._seam import Channel
    from ._state import PoolState
    from ._stop import StopToken

__all__ = ["CleanupBudget", "Drain"]

# What a channel's aclose() may take beyond the cleanup grace (flushing settlements).
_CHANNEL_CLOSE_SECONDS = 5.0


@final
class CleanupBudget:
    """Shields for cleanups that the shutdown deadline can still bound.

    Args:
        grace: seconds a cleanup may still run once it is cut off.
    """

    __slots__ = ("_cut_off_at", "_shields", "grace")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._cut_off_at: float | None = None
        self._shields: set[anyio.CancelScope] = set()

    @contextmanager
    def shield(self) -> Iterator[anyio.CancelScope]:
        """Shield a cleanup from cancellation, but not past the deadline's grace.

        ``cancelled_caught`` on the yielded scope tells that it was cut off.
        """
        shield = anyio.CancelScope(shield=True)
        if self._cut_off_at is not None:
            shield.deadline = self._cut_off_at + self.grace
        self._shields.add(shield)
        try:
            with shield:
                yield shield
        finally:
            self._shields.discard(shield)

    def bound_running(self, now: float) -> None:
        """Give the cleanups running now the grace from *now*, no more."""
        for shield in self._shields:
            shield.deadline = min(shield.deadline, now + self.grace)

    def cut_off(self, now: float) -> None:
        """The deadline has passed: running and later cleanups get the grace only."""
        self._cut_off_at = now
        self.bound_running(now)


@final
class Drain:
    """The shutdown of one pool: run once, awaited by every caller of ``shutdown``.

    Args:
        state: the pool's shared state.
        channel: the channel the pool consumes.
        stop: the pool's `StopToken`.
        budget: the pool's `CleanupBudget`.
        on_abandoned: called once with the items that did not finish.
    """

    __slots__ = ("_budget", "_channel", "_done", "_on_abandoned", "_state", "_stop", "_wait")

    def __init__(
        self,
        state: PoolState,
        channel: Channel,
        stop: StopToken,
        budget: CleanupBudget,
        on_abandoned: Hook | None,
    ) -> None:
        self._state = state
        self._channel = channel
        self._stop = stop
        self._budget = budget
        self._on_abandoned = on_abandoned
        self._done: anyio.Event | None = None
        self._wait: anyio.CancelScope | None = None

    async def shutdown(self, deadline: float, *, explicit: bool) -> DrainReport:
        """Drain once; a later call waits for the same report. An *explicit* deadline
        given during a drain brings its cut-off forward (never back)."""
        state = self._state
        if state.report is not None:
            await anyio.lowlevel.checkpoint()
            return state.report
        if self._done is not None:
            wait = self._wait
            if explicit and wait is not None:
                wait.deadline = min(wait.deadline, anyio.current_time() + deadline)
            await self._done.wait()
            assert state.report is not None
            return state.report
        self._done = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                report = state.report = await self._drain(deadline)
        finally:
            self._done.set()
        return report

    async def _drain(self, deadline: float) -> DrainReport:
        state = self._state
        channel = self._channel
        durable = channel.durable
        started = anyio.current_time()
        channel.close()
        self._stop.set()
        deadline_hit = False
        done = state.consumers_done
        if state.running and done is not None:
            wait = self._wait = anyio.move_on_after(deadline)
            with wait:
                await done.wait()
            if not done.is_set():
                deadline_hit = True
                self._abandon_queued()
                self._cut_off(anyio.current_time())
                with anyio.move_on_after(self._budget.grace + 0.5):
                    await done.wait()
                if not done.is_set():
                    self._report_stuck()
        if not durable and channel.qsize():
            deadline_hit = deadline_hit or state.running
            self._abandon_queued()
        state.running = False
        for item in state.abandoned:
            await release_parent(item)  # it will never run: let its parent session go
        await self._close_channel()
        unfinished = [*state.cancelled, *state.abandoned]
        if unfinished and self._on_abandoned is not None:
            # The hook may use what is left of the deadline, plus the grace; no more.
            drain_wait = self._wait
            until = drain_wait.deadline if drain_wait is not None else started + deadline
            grace = self._budget.grace
            with anyio.move_on_at(max(until, anyio.current_time()) + grace) as hook:
                await call_hook(self._on_abandoned, "on_abandoned", unfinished)
            if hook.cancelled_caught:
                logger.error(
                    "the on_abandoned hook was cut off %.1f s after the shutdown deadline", grace
                )
        report = DrainReport(
            succeeded=state.succeeded,
            failed=state.failed,
            cancelled=tuple(state.cancelled),
            abandoned=tuple(state.abandoned),
            elapsed=anyio.current_time() - started,
            deadline_hit=deadline_hit,
            dropped=channel.dropped_total,
            released=tuple(state.released),
        )
        log = logger.warning if unfinished else logger.info
        log(
            "pool shut down in %.3f s: %d succeeded, %d failed, %d dropped, %d cancelled, "
            "%d abandoned%s",
            report.elapsed,
            report.succeeded,
            report.failed,
            report.dropped,
            len(report.cancelled),
            len(report.abandoned),
            f", {len(report.released)} released" if durable else "",
        )
        return report

    def _report_stuck(self) -> None:
        """Consumers outlived the deadline and the grace: their work ignores
        cancellation. Report the items as cancelled and leave them running."""
        state = self._state
        stuck = [item for item in state.in_flight if item is not None]
        logger.error(
            "%d consumer(s) did not stop within %.1f s of the shutdown deadline: their work "
            "ignores cancellation (%s); reported as cancelled and left running",
            state.live_consumers,
            self._budget.grace + 0.5,
            ", ".join(item.name for item in stuck),
        )
        for item in stuck:
            if not item.state.finished:
                item.state = ItemState.CANCELLED
                state.cancelled.append(item)

    def _abandon_queued(self) -> None:
        abandoned = self._state.abandoned
        for item in self._channel.take_all():
            item.state = ItemState.ABANDONED
            abandoned.append(item)

    def _cut_off(self, now: float) -> None:
        """The deadline has passed: cancel in-flight items, bound running cleanups."""
        self._budget.cut_off(now)
        scope = self._state.consumer_scope
        if scope is not None:
            scope.cancel()

    async def _close_channel(self) -> None:
        """End the channel's housekeeping, then let it flush what it holds
        (settlements), within a bound."""
        state = self._state
        limit = self._budget.grace + _CHANNEL_CLOSE_SECONDS
        with anyio.move_on_after(limit) as bound:
            stopped = state.channel_stopped
            if stopped is not None and state.channel_scope is not None:
                # Cancelled already once the consumers stopped, unless one is stuck
                # in work that ignores cancellation.
                state.channel_scope.cancel()
                await stopped.wait()
            try:
                await self._channel.aclose()
            except Exception:
                logger.exception("closing the channel failed")
        if bound.cancelled_caught:
            logger.error(
                "closing the channel took over %.1f s and was cut off; what it still held "
                "is delivered again once its lease expires",
                limit,
            )
