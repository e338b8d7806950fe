"""The in-memory channel's state: `MemoryChannelBase`, the base of `BackgroundWorker`.

It holds the ready queue, the delayed items and keys (`Later`), the waiting
producers and consumers, the settings and the lifetime counters, and answers what
can be asked of them; `BackgroundWorker` (``_channel.py``) moves items through them.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ._checks import check_count, check_timeout
from ._delayed import Later
from ._full import DropHooks, FullMode, parse_full_mode

if TYPE_CHECKING:
    from collections.abc import Mapping

    import anyio

    from ._hooks import Hook, Spawn
    from ._item import WorkItem

__all__ = ["MemoryChannelBase"]


class MemoryChannelBase:
    """The state of an in-memory channel, its settings and counters (see
    `BackgroundWorker` for the arguments)."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_delayed",
        "_delaying",
        "_dropped",
        "_drops",
        "_enqueue_timeout",
        "_enqueued",
        "_full_mode",
        "_getters",
        "_idle",
        "_items",
        "_keyed",
        "_keys",
        "_later",
        "_putters",
        "_rejected",
        "_room",
        "_unfinished",
    )

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
        # delay= and key=: the delayed items and the keys (shared with _later), and
        # what the hot paths test, kept by BackgroundWorker._sync_later: whether
        # any item is delayed, whether any key is held (a bool is the cheapest
        # branch), and how many ready items fit (the capacity less the delayed).
        self._later = Later()
        self._delayed = self._later.heap
        self._keys = self._later.keys
        self._delaying = False
        self._keyed = False
        self._room = self._capacity

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
        """Accepted items not yet finished: queued, delayed, or taken and not `task_done`."""
        return self._unfinished

    def qsize(self) -> int:
        """How many items are waiting in the channel (delayed ones included)."""
        return len(self._items) + len(self._delayed)

    def __len__(self) -> int:
        return len(self._items) + len(self._delayed)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.qsize()}/{self._capacity} "
            f"{self._full_mode.value}{' closed' if self._closed else ''}>"
        )

    async def open(self, tasks: Mapping[str, Any]) -> None:
        """Nothing to open in memory."""

    async def run(self) -> None:
        """No housekeeping in memory: returns at once."""

    async def aclose(self) -> None:
        """Nothing to release in memory."""

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
