"""StopToken: how work learns that shutdown has begun."""

from __future__ import annotations

from typing import final

import anyio
import anyio.lowlevel

__all__ = ["StopToken"]


@final
class StopToken:
    """Set once when the pool begins to shut down (the .NET ``CancellationToken``).

    Long-running work can poll `is_set` between steps, or race `wait` against its
    own work to finish early and cleanly. It is a request, not a cancellation: the
    pool only cancels in-flight items when the shutdown deadline passes.
    """

    __slots__ = ("_event", "_is_set")

    def __init__(self) -> None:
        self._is_set = False
        self._event: anyio.Event | None = None  # made on first wait: needs a running loop

    def is_set(self) -> bool:
        """Whether shutdown has begun."""
        return self._is_set

    async def wait(self) -> None:
        """Wait until shutdown begins (returns at once if it has)."""
        if self._is_set:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def set(self) -> None:
        """Signal that shutdown has begun. Idempotent; the pool calls it."""
        self._is_set = True
        if self._event is not None:
            self._event.set()

    def __repr__(self) -> str:
        return f"<StopToken is_set={self._is_set}>"
