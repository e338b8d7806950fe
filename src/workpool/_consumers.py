"""The consumers: each claims items from the channel and runs them, in a loop.

`Consumers.run` is the pool's detached task: N consumer loops, the channel's
housekeeping next to them (a durable channel renews its leases there), and the
sweeper of expired sessions. Each consumer hands every item to
`ItemRunner.process`, which owns that item's cleanup.
"""

from __future__ import annotations

import time
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, final

import anyio
import anyio.abc
import anyio.lowlevel

from ._channel import BackgroundWorker
from ._context import run_in_context
from ._exceptions import PoolClosedError
from ._log import logger

if TYPE_CHECKING:
    from ._drain import CleanupBudget
    from ._execution import ItemRunner
    from ._hooks import Spawn
    from ._seam import Channel
    from ._session import SessionManager
    from ._state import PoolState

__all__ = ["Consumers"]

# Consumers take items without yielding while the channel has them: a checkpoint is
# a trip through the event loop, and a producer that outpaces the consumers only
# gets to refill the channel then. Every _SLICE_CHECK items, a consumer reads the
# clock, and checkpoints once _SLICE_SECONDS have passed since its last checkpoint
# or wait for an item: quick items get long slices (~150 no-op items), slow ones
# short, and no consumer starves the loop.
_SLICE_CHECK = 8
_SLICE_SECONDS = 0.0005


@final
class Consumers:
    """A pool's consumers and the tasks that run beside them.

    Args:
        count: how many consumers.
        state: the pool's shared state.
        channel: where items are claimed.
        items: runs each claimed item.
        sessions: whose expired sessions are swept.
        budget: bounds the sweeps past the shutdown deadline.
        cleanup_interval: seconds between sweeps.
        spawn: runs async work from the channel's sync code (the pool's task group).
    """

    __slots__ = (
        "_budget",
        "_channel",
        "_cleanup_interval",
        "_count",
        "_items",
        "_sessions",
        "_spawn",
        "_state",
        "_sweeper_scope",
    )

    def __init__(
        self,
        count: int,
        state: PoolState,
        channel: Channel,
        items: ItemRunner,
        sessions: SessionManager,
        budget: CleanupBudget,
        cleanup_interval: float,
        spawn: Spawn,
    ) -> None:
        self._count = count
        self._state = state
        self._channel = channel
        self._items = items
        self._sessions = sessions
        self._budget = budget
        self._cleanup_interval = cleanup_interval
        self._spawn = spawn
        self._sweeper_scope: anyio.CancelScope | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """N consumers, the channel's housekeeping (durable channels) and the session
        sweeper, until the consumers stop; started once they all run."""
        state = self._state
        worker = self._channel
        memory = worker if isinstance(worker, BackgroundWorker) else None
        # Shielded: an outer cancellation (of the body of `async with pool`, or of
        # the task group around it) must not cancel the consumers, or queued items
        # would never run; __aexit__ drains, and the deadline cancels this scope.
        with anyio.CancelScope(shield=True) as consumer_scope:
            state.consumer_scope = consumer_scope
            async with anyio.create_task_group() as consumers:
                state.live_consumers = self._count
                for index in range(self._count):
                    consumers.start_soon(self._consume, index, name=f"workpool consumer {index}")
                with anyio.CancelScope() as sweeper_scope:
                    self._sweeper_scope = sweeper_scope
                    if worker.durable:
                        state.channel_scope = anyio.CancelScope()
                        state.channel_stopped = anyio.Event()
                        consumers.start_soon(self._run_channel, name="workpool channel")
                    if memory is not None:
                        memory.set_spawner(self._spawn)
                    state.running = True
                    task_status.started()
                    await self._sweep()
        if memory is not None:
            memory.set_spawner(None)

    async def _run_channel(self) -> None:
        """The channel's housekeeping (lease renewal...), until the consumers stop."""
        state = self._state
        assert state.channel_scope is not None
        assert state.channel_stopped is not None
        try:
            with state.channel_scope:
                await self._channel.run()
        except Exception:
            logger.exception("the channel's housekeeping task failed; consumers go on")
        finally:
            state.channel_stopped.set()

    async def _sweep(self) -> None:
        while True:
            await anyio.sleep(self._cleanup_interval)
            with self._budget.shield() as shield:
                try:
                    await self._sessions.sweep_expired()
                except Exception:
                    logger.exception("sweeping expired sessions failed")
            if shield.cancelled_caught:
                logger.error(
                    "sweeping expired sessions was cut off %.1f s after the consumers stopped "
                    "(a session on_end hook hangs)",
                    self._budget.grace,
                )

    def _consumer_exited(self) -> None:
        state = self._state
        state.live_consumers -= 1
        if state.live_consumers == 0:
            # A sweep still running (its on_end hooks) gets the grace, no more.
            self._budget.bound_running(anyio.current_time())
            if self._sweeper_scope is not None:
                self._sweeper_scope.cancel()
            if state.channel_scope is not None:
                state.channel_scope.cancel()
            if state.consumers_done is not None:
                state.consumers_done.set()

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
        """Claim and run items inside *context* until the channel is closed (and, in
        memory, empty: True), or until an item leaves *context* changed (False)."""
        channel = self._channel
        claim_nowait = channel.claim_nowait
        process = self._items.process
        durable = channel.durable
        in_flight = self._state.in_flight
        # The runner appends every item's timings; folding them is done here, with
        # the clock check, rather than once per item.
        wait_times, run_times = self._state.wait_times, self._state.run_times
        run_pending, fold_at = run_times.pending, run_times.chunk
        monotonic = time.monotonic
        taken = 0
        slice_started = monotonic()
        while True:
            if taken >= _SLICE_CHECK:
                taken = 0
                if len(run_pending) >= fold_at:
                    wait_times.fold()
                    run_times.fold()
                if monotonic() - slice_started >= _SLICE_SECONDS:
                    await anyio.lowlevel.checkpoint()
                    slice_started = monotonic()
            try:
                item = claim_nowait()
            except anyio.WouldBlock:
                try:
                    item = await channel.claim()
                except PoolClosedError:
                    return True
                slice_started = monotonic()
            except PoolClosedError:
                return True
            taken += 1
            if durable and await self._items.take_delivery(item):
                continue  # rejected at claim: dead-lettered without running
            in_flight[index] = item
            try:
                await process(item)
            finally:
                in_flight[index] = None
            if context != base:
                return False
