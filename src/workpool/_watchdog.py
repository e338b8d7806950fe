"""A watchdog that names the work item blocking the event loop.

An ``async def`` work function that calls ``time.sleep`` or a blocking client stalls
every other item, request and timer on the loop, and nothing in the loop can notice
while it is stalled. A daemon thread can: every so often it posts a no-op to the
loop; when the no-op has not run after the threshold, it looks at the loop thread's
stack for the item running there and logs a warning naming it.

The pool pays nothing per item: the thread only reads the stack (and the pool's
list of in-flight items) when the loop is already blocked.
"""

from __future__ import annotations

import sys
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, final

from ._log import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from types import CodeType, FrameType

    from ._item import WorkItem

__all__ = ["LoopWatchdog", "loop_poster"]


def loop_poster() -> Callable[[Callable[[], object]], object]:
    """A thread-safe way to schedule a callback on the running event loop.

    The function returned raises `RuntimeError` once the loop has closed.
    """
    trio: Any = sys.modules.get("trio")
    if trio is not None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            post: Callable[[Callable[[], object]], object] = token.run_sync_soon
            return post
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe


def _code_of(work: object) -> CodeType | None:
    while isinstance(work, partial):
        work = work.func
    code = getattr(work, "__code__", None)
    if code is None:
        code = getattr(getattr(work, "__call__", None), "__code__", None)  # noqa: B004
    return code


@final
class LoopWatchdog:
    """Warns, naming the item, when the event loop is blocked past *threshold* seconds.

    Args:
        threshold: seconds the loop may be unresponsive before the warning.
        in_flight: the pool's list of running items (``None`` for idle consumers).
        post: schedules a callback on the loop from another thread (`loop_poster`).
        loop_thread: the loop thread's ident.
        item_codes: the code objects of the pool's per-item frames, whose local
            ``item`` is the item they run (``ItemRunner.frame_codes()``): where to
            look when the work function's own frame is not on the stack.
    """

    __slots__ = (
        "_acked",
        "_in_flight",
        "_interval",
        "_item_codes",
        "_loop_thread",
        "_post",
        "_posted",
        "_stop",
        "_thread",
        "threshold",
    )

    def __init__(
        self,
        threshold: float,
        in_flight: Sequence[WorkItem | None],
        post: Callable[[Callable[[], object]], object],
        loop_thread: int,
        item_codes: Collection[CodeType] = (),
    ) -> None:
        self.threshold = threshold
        self._item_codes = frozenset(item_codes)
        self._in_flight = in_flight
        self._post = post
        self._loop_thread = loop_thread
        self._interval = min(threshold / 4, 0.25)
        self._posted = 0
        self._acked = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (a daemon thread)."""
        thread = self._thread = threading.Thread(
            target=self._watch, name="workpool loop watchdog", daemon=True
        )
        thread.start()

    def stop(self) -> None:
        """Stop watching; returns once the thread has ended. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _ack(self, number: int) -> None:
        self._acked = number

    def _watch(self) -> None:
        posted_at = 0.0
        reported = False
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            if self._acked < self._posted:  # the loop has not run the last callback yet
                if not reported and now - posted_at >= self.threshold:
                    reported = True
                    try:
                        self._report(now - posted_at)
                    except Exception:  # never let the watchdog die of a report
                        logger.debug("the loop watchdog could not report", exc_info=True)
                continue
            if reported:
                reported = False
                logger.info(
                    "the event loop is responsive again after %.1f s",
                    now - posted_at,
                )
            self._posted += 1
            posted_at = now
            try:
                self._post(partial(self._ack, self._posted))
            except RuntimeError:  # the loop has closed
                return

    def _report(self, blocked_for: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return
        item, where = self._find_item(frame)
        if item is None:
            logger.debug(
                "the event loop has been blocked for %.1f s, not by a workpool item (at %s)",
                blocked_for,
                _where(frame),
            )
            return
        logger.warning(
            "the event loop has been blocked for %.1f s by work item %s (at %s): a blocking "
            "call in an async work function stalls every other item; make it a sync work "
            "function (it runs in a thread) or wrap the call in anyio.to_thread.run_sync",
            blocked_for,
            item.name,
            _where(where),
            extra={
                "work_name": item.name,
                "item_id": item.id,
                "attempt": item.attempts,
                "scope_id": None,
                "session_id": None,
            },
        )

    def _find_item(self, frame: FrameType) -> tuple[WorkItem | None, FrameType]:
        """The item running on the loop's stack, and the frame to point at: its work
        function's, else the innermost one."""
        frames: dict[CodeType, FrameType] = {}
        pool_frames: list[FrameType] = []
        current: FrameType | None = frame
        while current is not None:
            frames.setdefault(current.f_code, current)
            if current.f_code in self._item_codes:
                pool_frames.append(current)
            current = current.f_back
        running = [item for item in list(self._in_flight) if item is not None]
        for item in running:
            code = _code_of(item.work)
            if code is not None and code in frames:
                return item, frames[code]
        for pool_frame in pool_frames:
            local = pool_frame.f_locals.get("item")
            for item in running:
                if local is item:
                    return item, frame
        return None, frame


def _where(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
