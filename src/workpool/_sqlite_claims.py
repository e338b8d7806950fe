"""The consumer side of the SQLite channel: claims, leases, settlements.

Consumers that find nothing ready wait in `Claims.claim`, and each waiting consumer
has one item asked for in the store: never more items claimed than consumers wait
for (the claims of consumers that wait together share the store's next batch).
When the store had nothing due, one waiting consumer polls (the next due time, a
wake-up from this channel, or every `POLL` seconds for work stored by other
processes) and the others wait for it. A claim's result is taken on the event loop
by `Claims._claimed` whoever asked, so that a consumer cancelled meanwhile loses
nothing: what was claimed is either handed out or handed back.

Settlements go to an outbox that one request writes in the store's next batch
(`settle` is synchronous for the pool); `Claims.pending` counts those not committed
yet, and `SqliteChannel.aclose` waits for them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final, final
from uuid import UUID

import anyio
import anyio.lowlevel

from . import _sqlite_sql as sql
from ._exceptions import PoolClosedError
from ._log import logger
from ._payload import format_error
from ._seam import Settle
from ._sqlite_items import restore_item
from ._sqlite_store import Request
from ._watchdog import loop_poster

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ._item import WorkItem
    from ._sqlite_items import ChannelOptions
    from ._sqlite_store import SqliteStore

__all__ = ["POLL", "Claims"]

#: How often an idle consumer looks for work stored by other processes (work stored
#: by this channel, and releases, wake it at once).
POLL: Final = 0.05
_DONE: Final = Settle.DONE
_CLOSED: Final = "the channel is closed: a durable channel stops claiming at once"


@final
class Claims:
    """What one `SqliteChannel` claimed and has not settled yet.

    Args:
        store: the channel's connection thread.
        options: the channel's arguments.
        label: how logs name the channel.
    """

    def __init__(self, store: SqliteStore, options: ChannelOptions, label: str) -> None:
        self._store = store
        self._lease = options.lease
        self._max_deliveries = options.max_deliveries
        self._label = label
        self.tasks: Mapping[str, Any] = {}
        self.post: Callable[[Callable[[], object]], object] | None = None
        self.ready: deque[WorkItem] = deque()
        self.held: dict[UUID, WorkItem] = {}
        self.closed = False
        self.pending = 0  # settlements not committed yet
        self._outbox: list[sql.Settlement] = []
        self._outbox_lock = threading.Lock()
        self._flush_queued = False
        self.queued = 0  # the queue's size, refreshed by `run`
        self._waiting = 0
        self._asked = 0  # items asked for by the claims in flight
        self._polling = False
        self._maybe_due = True
        self._arrived: anyio.Event | None = None  # a claim or a poll ended
        self._wakeup: anyio.Event | None = None  # new work may be due
        self._room: anyio.Event | None = None  # an item finished (capacity)
        self._claims: set[Request] = set()  # in flight
        self._landed: anyio.Event | None = None  # set when none is in flight

    # -- claiming ------------------------------------------------------------------------

    def claim_nowait(self) -> WorkItem:
        """An item claimed already for a waiting consumer (`anyio.WouldBlock`: none)."""
        if self.closed:
            raise PoolClosedError(_CLOSED)
        if not self.ready:
            raise anyio.WouldBlock
        return self.ready.popleft()

    async def claim(self) -> WorkItem:
        """The next due item, claimed for this consumer; waits for one.

        Each waiting consumer has an item asked for in the store (the claims of
        consumers that wait together share a batch); when the store had none due,
        one of them polls and the others wait for it.
        """
        if self.ready:
            # Nothing to wait for, but a cancelled caller must not take an item.
            await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self.closed:
                raise PoolClosedError(_CLOSED)
            if self.ready:
                return self.ready.popleft()
            self._waiting += 1
            try:
                if self._maybe_due:
                    wanted = self._waiting - self._asked
                    if wanted > 0:
                        self._ask(wanted)
                    await self._arrival().wait()
                elif self._polling:
                    await self._arrival().wait()
                else:
                    self._polling = True
                    try:
                        await self._poll()
                    finally:
                        self._polling = False
                        self._arrive()
            finally:
                self._waiting -= 1

    def _arrival(self) -> anyio.Event:
        arrived = self._arrived
        if arrived is None:
            arrived = self._arrived = anyio.Event()
        return arrived

    def _arrive(self) -> None:
        arrived, self._arrived = self._arrived, None
        if arrived is not None:
            arrived.set()

    def _ask(self, count: int) -> None:
        """Claim *count* due items in the store's next batch."""
        if self.post is None:
            self.post = loop_poster()
        request = Request(
            sql.claim,
            (count, self._lease),
            after=self._restore_all,
            notify=self._claimed,
            post=self.post,
        )
        self._asked += count
        self._claims.add(request)
        self._store.submit(request)

    async def _poll(self) -> None:
        """Wait until something may be due: the next due time, a wake-up (work stored
        or released here), or a poll interval (work stored by other processes)."""
        next_due = await self._store.call(sql.next_due, writes=False)
        now = time.time()
        if next_due is not None and next_due <= now:
            self._maybe_due = True
            return
        if self._wakeup is None:
            self._wakeup = anyio.Event()
        with anyio.move_on_after(POLL if next_due is None else min(POLL, next_due - now)):
            await self._wakeup.wait()

    def _restore_all(self, rows: list[sql.Claimed]) -> list[WorkItem]:
        # In the store's thread, after the commit: decoding stays off the event loop.
        tasks, limit = self.tasks, self._max_deliveries
        return [restore_item(row, tasks, limit) for row in rows]

    def _claimed(self, request: Request) -> None:
        """A claim's result, on the event loop (even if the consumer that asked left)."""
        asked = request.args[0]
        self._asked -= asked
        self._claims.discard(request)
        if not self._claims:
            landed, self._landed = self._landed, None
            if landed is not None:
                landed.set()
        self._arrive()
        if request.error is not None:
            if not request.cancelled:
                logger.error("claiming from %s failed: %r", self._label, request.error)
            self._maybe_due = False
            return
        items: list[WorkItem] = request.result
        if len(items) < asked:
            self._maybe_due = False
        held = self.held
        for item in items:
            held[item.id] = item
        if self.closed:
            for item in items:
                self.unclaim(item)
        else:
            self.ready.extend(items)

    async def claim_landed(self) -> None:
        """Wait until no claim is in flight (what they claimed is handed back)."""
        while self._claims:
            if self._landed is None:
                self._landed = anyio.Event()
            await self._landed.wait()

    # -- settling ------------------------------------------------------------------------

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        reason: str | None,
        error: BaseException | None,
        delay: float,
    ) -> None:
        """Queue the outcome of a claimed item for the next commit."""
        self.held.pop(item.id, None)
        receipt: int = item.receipt  # type: ignore[assignment]
        if outcome is _DONE:
            settlement = sql.Settlement("done", str(item.id), receipt)
        else:
            text, traceback = format_error(error) if error is not None else ("", None)
            settlement = sql.Settlement(
                outcome.value,
                str(item.id),
                receipt,
                attempts=item.attempts,
                delay=delay,
                reason=reason or "failed",
                error=text,
                traceback=traceback,
                reported=item.deliveries,
            )
        self._write(settlement)

    def unclaim(self, item: WorkItem) -> None:
        """Hand back an item claimed but never given to a consumer."""
        self.held.pop(item.id, None)
        receipt: int = item.receipt  # type: ignore[assignment]
        self._write(sql.Settlement("unclaim", str(item.id), receipt))

    def _write(self, settlement: sql.Settlement) -> None:
        if self.closed and self._store.stopped:
            logger.warning(
                "the outcome of %s (%s) came after %s was closed and is not written; it "
                "is delivered again once its lease expires",
                settlement.id,
                settlement.kind,
                self._label,
            )
            return
        self.pending += 1
        # Outcomes wait in the outbox for one request that writes them all: one
        # wake-up of the store's thread for many settlements.
        with self._outbox_lock:
            self._outbox.append(settlement)
            if self._flush_queued:
                return
            self._flush_queued = True
        self._store.submit(Request(self._flush, ([],), notify=self._flushed, post=self.post))

    def _take_outbox(self) -> list[sql.Settlement]:
        with self._outbox_lock:
            taken, self._outbox = self._outbox, []
            self._flush_queued = False
        return taken

    def _flush(self, batch: sql.Batch, taken: list[sql.Settlement]) -> list[sql.Settlement]:
        """In the store's thread: write the outbox (the same outcomes again when a
        failed batch is retried); return those whose claim was lost."""
        if not taken:
            taken.extend(self._take_outbox())
        return sql.settle(batch, taken)

    def _flushed(self, request: Request) -> None:
        taken: list[sql.Settlement] = request.args[0]
        if not taken:  # never ran (the store was closed while unavailable)
            taken = self._take_outbox()
        self.pending -= len(taken)
        if request.error is not None:
            logger.error(
                "writing %d outcome(s) to %s failed; those items are delivered again once "
                "their lease expires: %r",
                len(taken),
                self._label,
                request.error,
            )
        else:
            for settlement in request.result:
                logger.warning(
                    "the outcome of %s (%s) was not written: its lease had expired and it "
                    "was claimed again; it may run twice (make tasks idempotent, or raise "
                    "lease=)",
                    settlement.id,
                    settlement.kind,
                )
        for settlement in taken:
            kind = settlement.kind
            if kind in ("released", "unclaim") or (kind == "rescheduled" and settlement.delay <= 0):
                self.wake(due=True)
                break
        room, self._room = self._room, None
        if room is not None:
            room.set()

    # -- waking --------------------------------------------------------------------------

    def wake(self, *, due: bool) -> None:
        """New work may be due (*due*: claim at once), or the channel closed."""
        if due:
            self._maybe_due = True
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    async def wait_for_room(self) -> None:
        """Wait until an item of this channel finishes, or a poll interval (other
        processes free room too)."""
        if self._room is None:
            self._room = anyio.Event()
        with anyio.move_on_after(POLL):
            await self._room.wait()

    def close(self) -> None:
        """Stop claiming; hand back what was claimed and not handed out."""
        if self.closed:
            return
        self.closed = True
        while self.ready:
            self.unclaim(self.ready.popleft())
        for claim in self._claims:
            claim.cancelled = True  # the store skips it unless it ran already
        self.wake(due=False)
        for event in (self._arrived, self._room):
            if event is not None:
                event.set()

    # -- housekeeping --------------------------------------------------------------------

    async def run(self) -> None:
        """Renew the leases of held items and refresh ``queued``, until cancelled."""
        self.post = loop_poster()
        lease = self._lease
        tick = min(lease / 3, 1.0)
        warned: set[UUID] = set()
        while True:
            await anyio.sleep(tick)
            held = [(str(item.id), item.receipt) for item in self.held.values()]
            try:
                lost = await self._store.call(sql.renew, held, lease) if held else []
                # read after the commit, outside the write lock
                self.queued, _ = await self._store.call(sql.counts, writes=False)
            except Exception:
                logger.exception("renewing the leases of %s failed", self._label)
                continue
            for message_id in lost:
                key = UUID(message_id)
                item = self.held.get(key)
                if item is not None and key not in warned:
                    warned.add(key)
                    logger.warning(
                        "the lease of %s (%s) expired before it could be renewed; another "
                        "consumer may run it too (make tasks idempotent, or raise lease=)",
                        item.name,
                        key,
                        extra={"work_name": item.name, "item_id": key},
                    )

    async def join(self) -> None:
        """Wait until the queue has no unfinished item (in any process)."""
        while True:
            if not self.held and not self.pending:
                _, unfinished = await self._store.call(sql.counts, writes=False)
                if unfinished == 0:
                    return
            await anyio.sleep(POLL / 2)
