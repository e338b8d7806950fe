"""Queues of waiting tasks (producers waiting for room, consumers for items)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections import deque

    import anyio

__all__ = ["forget", "wake_all", "wake_first"]


def wake_first(waiters: deque[anyio.Event]) -> None:
    """Wake the first waiter still waiting."""
    while waiters:
        event = waiters.popleft()
        if not event.is_set():
            event.set()
            return


def wake_all(waiters: deque[anyio.Event]) -> None:
    """Wake every waiter."""
    while waiters:
        waiters.popleft().set()


def forget(waiters: deque[anyio.Event], event: anyio.Event) -> None:
    """Take a waiter that leaves unwoken (cancelled) out of the queue."""
    # A waiter that leaves unwoken must not stay queued: the next wake-up would go
    # to it and be lost, stranding the waiter behind it.
    with contextlib.suppress(ValueError):
        waiters.remove(event)
