"""What a full channel does: `FullMode`, and the hooks told of each dropped item."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, final

from ._hooks import Hook, Spawn, call_hook, call_hook_sync
from ._session import release_parent, release_parent_nowait

if TYPE_CHECKING:
    from ._item import WorkItem

__all__ = ["DropHooks", "FullMode", "parse_full_mode"]


class FullMode(enum.StrEnum):
    """What ``enqueue`` does when the channel is full."""

    WAIT = "wait"
    """Wait for room (up to ``enqueue_timeout``); ``enqueue_nowait`` raises."""
    REJECT = "reject"
    """Raise `QueueFullError` at once."""
    DROP_OLDEST = "drop_oldest"
    """Evict the oldest queued item to make room."""
    DROP_NEWEST = "drop_newest"
    """Evict the most recently queued item to make room."""
    DROP_WRITE = "drop_write"
    """Discard the item being written; it is returned with state ``DROPPED``."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> FullMode | None:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for mode in cls:
                if mode.value == key:
                    return mode
        return None


def parse_full_mode(value: FullMode | str, argument: str = "full_mode") -> FullMode:
    """A `FullMode` from a member or its name, case-insensitively; `ValueError` if unknown."""
    try:
        return FullMode(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in FullMode)
        raise ValueError(f"{argument} must be one of {choices}, got {value!r}") from None


@final
class DropHooks:
    """The hooks called with each item a full channel drops (``on_drop``).

    A dropped item will never run: its hold on its parent session is released
    first. From sync code (``enqueue_nowait``), async hooks and session ends run
    through *spawn*, the running pool's task group.
    """

    __slots__ = ("hooks", "spawn")

    def __init__(self, on_drop: Hook | None = None) -> None:
        self.hooks: list[Hook] = [on_drop] if on_drop is not None else []
        self.spawn: Spawn | None = None

    def add(self, hook: Hook) -> None:
        """Call *hook* too (sync or async)."""
        if not callable(hook):
            raise TypeError(f"a drop hook must be callable, got {hook!r}")
        self.hooks.append(hook)

    def remove(self, hook: Hook) -> None:
        """Stop calling *hook*; no effect if it was not added."""
        if hook in self.hooks:
            self.hooks.remove(hook)

    async def report(self, item: WorkItem) -> None:
        """Tell the hooks of *item*, awaiting async ones."""
        await release_parent(item)
        for hook in self.hooks:
            await call_hook(hook, "on_drop", item)

    def report_nowait(self, item: WorkItem) -> None:
        """Tell the hooks of *item* from sync code."""
        release_parent_nowait(item, self.spawn)
        for hook in self.hooks:
            call_hook_sync(hook, "on_drop", item, spawn=self.spawn)
