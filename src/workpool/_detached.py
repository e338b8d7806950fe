"""Tasks that no caller's task group waits for: how the pool's consumers run.

A task group cannot be left while a child still runs, so consumers started in a
task group owned by the caller of ``async with pool`` would let one work function
that ignores cancellation hold the caller forever. The consumers run instead in a
*detached* task (a trio system task, or a plain asyncio task) that shutdown waits
for only as long as its deadline allows. Two more things follow from that: the
cancellation of the task running ``async with pool`` no longer reaches the
consumers, so leaving the block that way still drains; and the task is kept
referenced here until it ends, so asyncio never destroys it while pending.
"""

from __future__ import annotations

import sys
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, final

import anyio

from ._log import logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Detached", "start_detached"]

# Running detached tasks, so that asyncio (which keeps only weak references to its
# tasks) cannot collect one that is still pending.
_running: set[Detached] = set()


@final
class Detached:
    """A handle on a task started by `start_detached`."""

    __slots__ = ("_done", "_started", "_task", "error", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BaseException | None = None
        self._done = anyio.Event()
        self._started = anyio.Event()
        self._task: object = None

    @property
    def done(self) -> bool:
        """Whether the task has ended."""
        return self._done.is_set()

    async def wait(self) -> None:
        """Wait until the task has ended."""
        await self._done.wait()

    def started(self, value: object = None) -> None:
        """Called by the task once it runs (an ``anyio.abc.TaskStatus``)."""
        self._started.set()

    def __repr__(self) -> str:
        return f"<Detached {self.name!r} {'done' if self.done else 'running'}>"


def _on_trio() -> bool:
    trio: Any = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def start_detached(
    func: Callable[..., Awaitable[None]],
    *,
    name: str,
    on_crash: Callable[[BaseException], None] | None = None,
) -> Detached:
    """Run ``func(task_status=handle)`` in a task of its own; return once it has started.

    The task runs in a copy of the caller's context. An exception it raises before
    calling ``task_status.started()`` is raised here; one raised after is logged,
    kept in `Detached.error` and handed to *on_crash*. So is a ``KeyboardInterrupt``
    or ``SystemExit`` when *on_crash* is given (a trio system task must not raise
    one); cancellation always propagates.
    """
    handle = Detached(name)

    early: list[BaseException] = []

    async def run() -> None:
        try:
            await func(task_status=handle)
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            if not handle._started.is_set():
                early.append(exc)
            elif on_crash is not None or isinstance(exc, Exception):
                handle.error = exc
                logger.error("%s crashed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
                if on_crash is not None:
                    on_crash(exc)
            else:
                raise
        finally:
            _running.discard(handle)
            handle._done.set()
            handle._started.set()

    context = copy_context()
    _running.add(handle)
    if _on_trio():
        import trio

        handle._task = trio.lowlevel.spawn_system_task(run, name=name, context=context)
    else:
        import asyncio

        handle._task = asyncio.get_running_loop().create_task(run(), name=name, context=context)
    # Brief (the task starts at once), and not to be left half-done by a cancellation.
    with anyio.CancelScope(shield=True):
        await handle._started.wait()
    if early:
        raise early.pop()
    return handle
