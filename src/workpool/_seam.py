"""The seam between the pool and its channel: `Channel` and `Settle`.

A consumer *claims* an item from the channel, runs it, and *settles* it with one
call: done, dead (failed for good), released (handed back), or rescheduled. The
in-memory `BackgroundWorker` pays nothing for this; a durable channel (SQLite,
Redis) acknowledges, writes dead letters, releases and re-adds items in its store,
and renews the leases of the items it handed out from `Channel.run`.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

    from ._hooks import Hook
    from ._item import Work, WorkItem
    from ._retry import RetryPolicy
    from ._session import Session

__all__ = ["Channel", "Enqueue", "Settle"]


class Settle(enum.Enum):
    """How a consumer ends its hold on a claimed item (`Channel.settle`)."""

    DONE = "done"
    """Succeeded: acknowledge (a durable channel removes it from the store)."""
    DEAD = "dead"
    """Failed for good: write a dead letter, then acknowledge."""
    RELEASED = "released"
    """Hand back to the store at once, deliveries kept (shutdown)."""
    RESCHEDULED = "rescheduled"
    """Acknowledge and re-add, due after ``delay`` seconds, attempts kept."""


class Enqueue(Protocol):
    """A channel's ``enqueue`` method, as `WorkerPool.enqueue` hands it out."""

    def __call__(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> Coroutine[Any, Any, WorkItem]: ...


@runtime_checkable
class Channel(Protocol):
    """What a `WorkerPool` needs from a channel.

    Producers call ``enqueue``/``enqueue_nowait``. The pool calls ``open`` once
    before its first claim, runs ``run`` next to its consumers (housekeeping: lease
    renewal, crash reclaim...), and its consumers call ``claim_nowait`` (raising
    ``anyio.WouldBlock`` when nothing is ready), ``claim``, and ``settle`` exactly
    once per claimed item. ``close`` stops intake and claiming, ``take_all`` removes
    what is still queued in memory at the shutdown deadline, and ``aclose`` flushes
    and releases the channel's resources at the end. Counters are lifetime totals
    of this process.

    Attributes:
        durable: whether items live outside the process (then ``enqueue`` takes
            named task calls only, and shutdown releases what is held).
        max_local_backoff: a retry wait above this many seconds reschedules the
            item in the store instead of sleeping in the consumer.
    """

    durable: bool
    max_local_backoff: float

    @property
    def capacity(self) -> int | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def enqueued_total(self) -> int: ...

    @property
    def dropped_total(self) -> int: ...

    @property
    def rejected_total(self) -> int: ...

    def qsize(self) -> int: ...

    @property
    def enqueue(self) -> Enqueue:
        """``await channel.enqueue(work, ...)`` (an ``async def`` method)."""
        ...

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
    ) -> WorkItem: ...

    async def open(self, tasks: Mapping[str, Any]) -> None: ...

    async def run(self) -> None: ...

    async def claim(self) -> WorkItem: ...

    def claim_nowait(self) -> WorkItem: ...

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None: ...

    async def join(self) -> None: ...

    def close(self) -> None: ...

    def take_all(self) -> list[WorkItem]: ...

    async def aclose(self) -> None: ...

    def add_drop_hook(self, hook: Hook) -> None: ...

    def remove_drop_hook(self, hook: Hook) -> None: ...
