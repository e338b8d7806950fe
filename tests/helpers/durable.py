"""A fake durable channel: the seam's durable paths, without a store.

It keeps "stored" items in a deque, hands them out as a durable channel would
(`WorkItem.restore`, deliveries counted per claim, a rejection when told to), and
records every call the pool makes on it: open, run, each settlement, aclose.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from workpool import PoolClosedError, WorkItem
from workpool._item import new_uuid4
from workpool._seam import Settle

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from uuid import UUID

    from workpool import RetryPolicy, Session, Work


@dataclass
class Stored:
    """One message as a store would keep it."""

    id: UUID
    work: Work
    name: str
    attempts: int = 0
    deliveries: int = 0
    rejection: tuple[str, Exception] | None = None


@dataclass(frozen=True)
class Settlement:
    """One call of `FakeDurableChannel.settle`, with the error already formatted."""

    id: UUID
    outcome: Settle
    reason: str | None
    error: str | None
    delay: float
    attempts: int
    deliveries: int


class FakeDurableChannel:
    """An in-memory stand-in for a durable channel (``durable = True``).

    Args:
        max_local_backoff: retry waits above this are rescheduled, not slept.
    """

    durable = True

    def __init__(self, *, max_local_backoff: float = 10.0) -> None:
        self.max_local_backoff = max_local_backoff
        self.store: deque[Stored] = deque()
        self.held: dict[UUID, WorkItem] = {}
        self.settlements: list[Settlement] = []
        self.events: list[str] = []
        self.opened_with: Mapping[str, Any] | None = None
        self._closed = False
        self._enqueued = 0
        self._wakeup: anyio.Event | None = None
        self._drop_hooks: list[Callable[..., Any]] = []

    # -- test helpers ---------------------------------------------------------------

    def put(
        self,
        work: Work,
        *,
        name: str = "fake",
        attempts: int = 0,
        deliveries: int = 0,
        rejection: tuple[str, Exception] | None = None,
    ) -> UUID:
        """Store a message directly, as another process would have."""
        stored = Stored(new_uuid4(), work, name, attempts, deliveries, rejection)
        self.store.append(stored)
        self._wake()
        return stored.id

    def outcomes(self) -> list[Settle]:
        """The outcomes settled so far, in order."""
        return [s.outcome for s in self.settlements]

    # -- producers ------------------------------------------------------------------

    @property
    def capacity(self) -> int | None:
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def enqueued_total(self) -> int:
        return self._enqueued

    @property
    def dropped_total(self) -> int:
        return 0

    @property
    def rejected_total(self) -> int:
        return 0

    def qsize(self) -> int:
        return len(self.store)

    async def enqueue(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> WorkItem:
        await anyio.lowlevel.checkpoint()
        return self.enqueue_nowait(work, parent_session, name=name)

    def enqueue_nowait(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> WorkItem:
        if self._closed:
            raise PoolClosedError("closed")
        message_id = self.put(work, name=name or "fake")
        self._enqueued += 1
        return WorkItem.restore(
            work,
            id=message_id,
            name=name or "fake",
            timeout=timeout,
            deliveries=0,
            attempts=0,
            receipt=None,
        )

    # -- consumers ------------------------------------------------------------------

    async def open(self, tasks: Mapping[str, Any]) -> None:
        self.opened_with = tasks
        self.events.append("open")

    async def run(self) -> None:
        self.events.append("run")
        try:
            await anyio.sleep_forever()
        finally:
            self.events.append("run cancelled")

    def claim_nowait(self) -> WorkItem:
        if self._closed:
            raise PoolClosedError("closed: a durable channel stops claiming at once")
        if not self.store:
            raise anyio.WouldBlock
        stored = self.store.popleft()
        stored.deliveries += 1
        item = WorkItem.restore(
            stored.work,
            id=stored.id,
            name=stored.name,
            timeout=None,
            deliveries=stored.deliveries,
            attempts=stored.attempts,
            receipt=stored,
        )
        item.rejection = stored.rejection
        self.held[stored.id] = item
        return item

    async def claim(self) -> WorkItem:
        while True:
            try:
                return self.claim_nowait()
            except anyio.WouldBlock:
                pass
            if self._wakeup is None or self._wakeup.is_set():
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        assert item.id in self.held, f"{item!r} settled twice or never claimed"
        del self.held[item.id]
        stored = item.receipt
        assert isinstance(stored, Stored)
        text = None if error is None else f"{type(error).__name__}: {error}"
        self.settlements.append(
            Settlement(item.id, outcome, reason, text, delay, item.attempts, item.deliveries)
        )
        if outcome is Settle.RESCHEDULED:
            stored.attempts = item.attempts
            stored.rejection = None
            self.store.append(stored)
            self._wake()
        elif outcome is Settle.RELEASED:
            self.store.appendleft(stored)

    async def join(self) -> None:
        while self.store or self.held:
            await anyio.sleep(0.01)

    def close(self) -> None:
        self._closed = True
        self._wake()

    def take_all(self) -> list[WorkItem]:
        return []

    async def aclose(self) -> None:
        self.events.append("aclose")

    def add_drop_hook(self, hook: Callable[..., Any]) -> None:
        self._drop_hooks.append(hook)

    def remove_drop_hook(self, hook: Callable[..., Any]) -> None:
        if hook in self._drop_hooks:
            self._drop_hooks.remove(hook)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
