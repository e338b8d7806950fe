"""``delay=`` and ``key=`` on the in-memory channel: `Later`, and the checks.

`Later` keeps a channel's delayed items in a heap by due time
(``WorkItem.not_before``, a ``time.monotonic()`` reading) and the keys of its
unfinished items. When a consumer claims, the channel moves the items that are due
to its ready queue, each behind the ready items due no later than it, so claims are
FIFO among due items (a ready item is due from its acceptance). Nothing here runs
for an item enqueued without ``delay=`` or ``key=``.
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_right
from typing import TYPE_CHECKING, final

from ._item import WorkItem, item_with_options

if TYPE_CHECKING:
    from collections import deque

    from ._item import Work
    from ._retry import RetryPolicy
    from ._session import Session

__all__ = ["Later", "check_delay", "check_key", "delay_seconds", "make_item"]

# A heap entry: (due time, acceptance order, item). The order breaks ties (FIFO)
# and keeps tuple comparison away from the items.
_Entry = tuple[float, int, WorkItem]


def check_delay(delay: object) -> float:
    """A finite number of seconds, zero or more (``enqueue(delay=...)``)."""
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"delay must be a number of seconds or None, got {delay!r}")
    if not (delay >= 0 and math.isfinite(delay)):  # also rejects NaN
        raise ValueError(f"delay must be a finite number of seconds, zero or more, got {delay!r}")
    return float(delay)


def check_key(key: object) -> str:
    """A non-empty ``str`` (``enqueue(key=...)``)."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a str or None, got {key!r}")
    if not key:
        raise ValueError("key must be a non-empty str; pass key=None for an item without a key")
    return key


def delay_seconds(delay: float | None) -> float:
    """``enqueue(delay=...)`` checked: 0.0 for ``None``."""
    return 0.0 if delay is None else check_delay(delay)


def make_item(
    work: Work,
    parent_session: Session | None,
    retry: RetryPolicy | None,
    timeout: float | None,
    name: str | None,
    key: str | None,
) -> WorkItem:
    """An item enqueued with options (the rare path), its ``key`` checked and set."""
    item = item_with_options(work, parent_session, retry, timeout, name)
    if key is not None:
        item.key = check_key(key)
    return item


def _due(item: WorkItem) -> float:
    """When a ready item became due: its ``not_before``, else its acceptance."""
    return item.not_before or item.enqueued_at


def _order(entry: _Entry) -> int:
    return entry[1]


@final
class Later:
    """A channel's delayed items, by due time, and the keys of its unfinished items.

    Attributes:
        heap: ``(due, order, item)`` entries, earliest due first (`heapq`).
        keys: each key held by an unfinished item (queued, delayed or running), and
            that item.
    """

    __slots__ = ("_accepted", "heap", "keys")

    def __init__(self) -> None:
        self.heap: list[_Entry] = []
        self.keys: dict[str, WorkItem] = {}
        self._accepted = 0

    def holder(self, item: WorkItem) -> WorkItem | None:
        """The unfinished item that holds *item*'s key, if any."""
        key = item.key
        if key is None:
            return None
        held = self.keys.get(key)
        # An item in a final state is finished, even before its consumer settles it
        # (releasing its session, calling on_dead_letter): the key is free.
        return None if held is None or held.state.finished else held

    def hold_key(self, item: WorkItem) -> None:
        """Let *item*, just accepted, hold its key (if it has one)."""
        key = item.key
        if key is not None:
            self.keys[key] = item

    def free(self, item: WorkItem) -> None:
        """*item* finished, was dropped or taken out: its key is free again."""
        key = item.key
        if key is not None and self.keys.get(key) is item:
            del self.keys[key]

    def push(self, item: WorkItem, delay: float) -> bool:
        """Hold *item* until *delay* seconds after its acceptance; True when it is now
        the first one due."""
        due = item.enqueued_at + delay
        item.not_before = due
        self._accepted += 1
        heapq.heappush(self.heap, (due, self._accepted, item))
        return self.heap[0][2] is item

    def seconds_to_due(self) -> float:
        """Seconds until the first delayed item is due (zero or less: it is)."""
        return self.heap[0][0] - time.monotonic()

    def promote(self, ready: deque[WorkItem], now: float) -> int:
        """Move the items due at *now* into *ready*, each behind the ready items due no
        later than it; return how many moved."""
        heap = self.heap
        moved = 0
        while heap and heap[0][0] <= now:
            due, _, item = heapq.heappop(heap)
            if not ready or _due(ready[-1]) <= due:
                ready.append(item)  # the usual case: nothing ready, or no backlog
            else:
                # The ready queue is in due order (acceptance order for most items):
                # a binary search indexes the deque O(log n) times.
                ready.insert(bisect_right(ready, due, key=_due), item)
            moved += 1
        return moved

    def evict(self, ready: deque[WorkItem], *, newest: bool) -> WorkItem:
        """Take out the waiting item (ready or delayed) accepted last (*newest*) or
        first, for ``drop_newest`` / ``drop_oldest``.

        Linear in the delayed items: only a full channel in a drop mode that holds
        delayed items comes here.
        """
        heap = self.heap
        if heap:
            entry = max(heap, key=_order) if newest else min(heap, key=_order)
            delayed = entry[2]
            if (
                not ready
                or (newest and delayed.enqueued_at > ready[-1].enqueued_at)
                or (not newest and delayed.enqueued_at < ready[0].enqueued_at)
            ):
                heap.remove(entry)
                heapq.heapify(heap)
                return delayed
        return ready.pop() if newest else ready.popleft()

    def take_all(self) -> list[WorkItem]:
        """Remove and return every delayed item, earliest due first."""
        entries = sorted(self.heap)
        self.heap.clear()
        return [entry[2] for entry in entries]
