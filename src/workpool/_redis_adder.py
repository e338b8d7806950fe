"""Group commit for the Redis channel's ``enqueue``: calls that arrive while a write
is on its way share the next one (one script call, one round trip)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ["Adder"]

_BATCH: Final = 100  # messages per script call


@final
class _Slot:
    __slots__ = ("error", "finished", "message", "result", "wake")

    def __init__(self, message: Sequence[Any]) -> None:
        self.message = message
        self.wake: anyio.Event | None = None  # made when the call waits
        self.finished = False
        self.result: tuple[int, bytes] | None = None
        self.error: BaseException | None = None


@final
class Adder:
    """Writes messages in batches: the first caller with no write under way leads (it
    writes what is queued, its own message included), the others wait; when a write
    ends, the oldest caller still waiting leads the next one.

    Args:
        write: writes a batch of messages, returning a result per message; raises to
            fail the whole batch (it retries through outages itself).
    """

    __slots__ = ("_changed", "_leading", "_queue", "_write")

    def __init__(self, write: Callable[[list[Sequence[Any]]], Awaitable[list[Any]]]) -> None:
        self._write = write
        self._queue: deque[_Slot] = deque()
        self._leading = False
        self._changed: anyio.Event | None = None

    @property
    def busy(self) -> bool:
        """Whether a write is under way or calls wait for the next one."""
        return self._leading or bool(self._queue)

    async def changed(self) -> None:
        """Wait until a write ends or a waiting call leaves (then `busy` may be False)."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _signal(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def add(self, message: Sequence[Any]) -> tuple[int, bytes]:
        """Write *message* (with whatever else is queued); its result.

        Cancelled while it waits, the message is taken out unless a write already
        holds it (then, as with any cancelled call, it may have been stored). A
        leader's write is shielded (it carries others' messages), bounded by the
        outage retries.
        """
        slot = _Slot(message)
        self._queue.append(slot)
        while not slot.finished:
            if self._leading:
                slot.wake = wake = anyio.Event()
                try:
                    await wake.wait()
                except BaseException:
                    if slot in self._queue:
                        self._queue.remove(slot)
                    self._hand_over()  # in case the lead had just been passed to it
                    self._signal()
                    raise
                continue
            self._leading = True
            try:
                with anyio.CancelScope(shield=True):
                    # Let the callers that are ready to run now join this write first
                    # (those just woken by the last one, typically).
                    await anyio.lowlevel.checkpoint()
                    await self._lead()
            finally:
                self._leading = False
                self._hand_over()
                self._signal()
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    async def _lead(self) -> None:
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(_BATCH, len(queue)))]
        try:
            results = await self._write([slot.message for slot in batch])
        except Exception as exc:
            for slot in batch:
                slot.error = exc
        else:
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        for slot in batch:
            slot.finished = True
            if slot.wake is not None:
                slot.wake.set()

    def _hand_over(self) -> None:
        if self._queue and not self._leading:
            wake = self._queue[0].wake
            if wake is not None:
                wake.set()
