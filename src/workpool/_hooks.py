"""Calling user hooks (sync or async) without letting them break the pool."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from ._log import logger

__all__ = ["Hook", "Spawn", "call_hook", "call_hook_sync", "try_spawn"]

Hook = Callable[..., Any]
#: Runs a coroutine function soon in the pool's task group (the channel's way to
#: get async work done from sync code).
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def try_spawn(
    spawn: Spawn | None, func: Callable[[], Coroutine[Any, Any, None]], what: str
) -> bool:
    """Hand *func* to *spawn*; False when there is nobody to run it (no running
    pool, or its task group is closing)."""
    if spawn is None:
        return False
    try:
        spawn(func)
    except Exception:
        logger.debug("could not schedule %s", what, exc_info=True)
        return False
    return True


async def call_hook(hook: Hook | None, what: str, *args: Any) -> None:
    """Call *hook* with *args*, awaiting it if it is async; log and swallow its errors."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("%s hook %r raised; ignored", what, hook)


def call_hook_sync(
    hook: Hook | None,
    what: str,
    *args: Any,
    spawn: Spawn | None = None,
) -> None:
    """Call *hook* from synchronous code.

    An async hook's coroutine is handed to *spawn* (the pool's task group) to run
    soon; with nobody to run it, it is closed and the miss is logged as an error.
    """
    if hook is None:
        return
    try:
        result = hook(*args)
    except Exception:
        logger.exception("%s hook %r raised; ignored", what, hook)
        return
    if not inspect.isawaitable(result):
        return
    awaitable = result

    async def run() -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("%s hook %r raised; ignored", what, hook)

    if try_spawn(spawn, run, f"async {what} hook"):
        return
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
    logger.error(
        "async %s hook %r could not run: it was called from synchronous code with no "
        "running pool to schedule it; use a sync hook with a bare BackgroundWorker",
        what,
        hook,
    )
