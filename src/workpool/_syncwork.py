"""Running a sync work function: in a worker thread, its result brought back.

Off the hot path of async work; used by `ItemRunner` for work functions that are
plain ``def`` (Django ORM calls, blocking clients...).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._item import Work
    from ._scope import Scope
    from ._stop import StopToken

__all__ = ["run_sync_work"]


async def run_sync_work(
    work: Work, scope: Scope, stopping: StopToken, limiter: anyio.CapacityLimiter | None
) -> None:
    """Call ``work(scope, stopping)`` in a worker thread bounded by *limiter*; await
    what it returns if that is awaitable, and raise what it raised."""
    result = await anyio.to_thread.run_sync(
        _call_in_thread, work, scope, stopping, limiter=limiter, abandon_on_cancel=True
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
