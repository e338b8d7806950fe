"""The consuming side of the Redis channel: claims, settlements and housekeeping.

Claims: idle consumers line up in `RedisConsumer.claim`; one of them reads for all
(``XREADGROUP`` of as many entries as consumers wait and a few more, ``BLOCK`` well
below the client's stream timeout), the others are woken one per entry read. When
this process also enqueues, the producers' writes read for the waiting consumers too
(in the same script call), so a blocked read mostly waits for a quiet moment. Crash
reclaim (``XAUTOCLAIM``, one sweeper at a time across the fleet) also fills only free
consumers. What was read sits in a short buffer that ``claim_nowait`` empties; its
leases are renewed like those of running items, and it is handed back at close.

Settlements (`workpool._redis_settle`) are written by the flusher in ``run``, or
ride along with the producers' writes; retried while Redis is unreachable. ``run``
also renews the leases of held entries (``XCLAIM ... JUSTID``), reclaims crashed
consumers' entries, and moves due delayed messages into the stream.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.lowlevel

from ._exceptions import ChannelUnavailableError, PoolClosedError
from ._log import logger
from ._redis_message import Held, backoff, item_from, milliseconds
from ._redis_settle import BATCH, Ride, Rider, Settlements
from ._redis_store import BLOCK_SECONDS, is_nogroup, is_outage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ._item import WorkItem
    from ._redis_message import Outage
    from ._redis_store import RedisStore
    from ._seam import Settle
    from ._task import Task

__all__ = ["RedisConsumer"]

_PREFETCH: Final = 16  # entries read ahead of the consumers waiting


@final
class RedisConsumer:
    """Claims and settlements of one channel in one process.

    Args:
        store: the queue's store.
        lease: seconds a claim lasts without renewal.
        max_deliveries: claims without an outcome before ``delivery_limit``.
        outage: the channel's outage tracker.
        outage_timeout: how long opening and the final flush keep trying.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        lease: float,
        max_deliveries: int,
        outage: Outage,
        outage_timeout: float,
    ) -> None:
        self._store = store
        self._lease = lease
        self._max_deliveries = max_deliveries
        self._outage = outage
        self._outage_timeout = outage_timeout
        self._tasks: Mapping[str, Task[...]] = {}
        self._buffer: deque[WorkItem] = deque()
        self._held: dict[bytes, Held] = {}
        self._waiting = 0
        self._waiters: deque[anyio.Event] = deque()  # consumers waiting in claim
        self._fetching = False
        self._fetch_scope: anyio.CancelScope | None = None
        self._closed = False
        self._opened = False
        self._settlements = Settlements(store, self._held, outage)
        self._read_waits = backoff()

    @property
    def held(self) -> int:
        """Entries claimed by this process and not yet settled in Redis."""
        return len(self._held)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- opening and claiming ------------------------------------------------------------

    async def open(self, tasks: Mapping[str, Task[...]]) -> None:
        """Remember the tasks; create the consumer group (retried while Redis is down)."""
        self._tasks = tasks
        await self._store.ensure()
        await self.retrying(self._store.create_group, "opening the queue")
        self._opened = True

    async def retrying(self, step: Callable[[], Awaitable[Any]], doing: str) -> Any:
        """Run *step*, retrying through an outage for ``outage_timeout`` seconds."""
        started = anyio.current_time()
        try:
            result = await step()  # the common case, without a scope
        except Exception as exc:
            if not is_outage(exc):
                raise
            error: BaseException | None = exc
            self._outage.failed(exc, doing)
        else:
            if self._outage.active:
                self._outage.recovered()
            return result
        waits = backoff()
        with anyio.CancelScope(deadline=started + self._outage_timeout):
            while True:
                await anyio.sleep(next(waits))
                await self._store.ensure()  # the client's task again, if it ended
                try:
                    result = await step()
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    error = exc
                    self._outage.failed(exc, doing)
                else:
                    self._outage.recovered()
                    return result
        raise ChannelUnavailableError(
            f"{doing}: Redis ({self._outage.where}) unreachable for "
            f"{self._outage_timeout:g} s: {type(error).__name__}: {error}"
        ) from error

    def claim_nowait(self) -> WorkItem:
        if self._closed:
            raise PoolClosedError("the Redis channel is closed: it claims nothing more")
        if self._buffer:
            return self._buffer.popleft()
        raise anyio.WouldBlock

    async def claim(self) -> WorkItem:
        """The next item read for this process; waits for one.

        One waiting consumer reads for all (`_fetch`); the others wait, each on an event
        of its own, and are woken one per item read (plus one to read next), not all
        together."""
        waiters = self._waiters
        while True:
            if self._closed:
                raise PoolClosedError("the Redis channel is closed: it claims nothing more")
            if self._buffer:
                return self._buffer.popleft()
            self._waiting += 1
            if not self._fetching:
                try:
                    await self._fetch()
                except BaseException:
                    self._wake(len(self._buffer) + 1)  # another one reads next
                    raise
                finally:
                    self._waiting -= 1
                # This one takes an item; one woken consumer is left over to read next.
                self._wake(len(self._buffer))
                continue
            wake = anyio.Event()
            waiters.append(wake)
            try:
                await wake.wait()
            except BaseException:
                if wake.is_set():
                    self._wake(1)  # it was woken for an item or to read: pass it on
                else:
                    waiters.remove(wake)
                raise
            finally:
                self._waiting -= 1

    def _wake(self, count: int) -> None:
        """Wake up to *count* waiting consumers, longest waiting first."""
        waiters = self._waiters
        while count > 0 and waiters:
            waiters.popleft().set()
            count -= 1

    async def _fetch(self) -> None:
        """Read new entries for the consumers waiting now (this one included), and up to
        ``_PREFETCH`` more: they wait in the buffer, their leases renewed like those of
        running items, and are handed back at close if no consumer took them."""
        self._fetching = True
        try:
            await anyio.lowlevel.checkpoint()  # the other idle consumers line up
            want = self._waiting + _PREFETCH - len(self._buffer)
            if want <= 0 or self._closed:
                return
            with anyio.CancelScope() as scope:  # close() cancels a blocked read
                self._fetch_scope = scope
                try:
                    entries = await self._store.read(want, int(BLOCK_SECONDS * 1000))
                except Exception as exc:
                    await self._trouble(exc, "claiming", self._read_waits)
                    return
                self._read_waits = backoff()
                self._outage.recovered()
                for entry, fields in entries:
                    self._take(entry, fields, 1)
        finally:
            self._fetch_scope = None
            self._fetching = False

    def _take(self, entry: bytes, fields: Mapping[bytes, bytes], delivered: int) -> None:
        if entry in self._held:
            return  # our own, reclaimed after a renewal failed: it runs already
        item = item_from(entry, fields, delivered, self._tasks, self._max_deliveries)
        self._held[entry] = item.receipt  # type: ignore[assignment]
        self._buffer.append(item)

    async def _trouble(self, exc: Exception, doing: str, waits: Any) -> None:
        """Log what went wrong with Redis (an outage once), recreate a lost group, wait."""
        if is_nogroup(exc):
            logger.error(
                "Redis queue %r lost its consumer group (Redis lost its data: restarted "
                "without persistence, or the stream was deleted): messages stored before "
                "are lost; creating the group again",
                self._store.queue,
            )
            try:
                await self._store.create_group()
                return
            except Exception as again:
                exc = again
        if is_outage(exc):
            logger.debug("Redis error while %s: %s: %s", doing, type(exc).__name__, exc)
            self._outage.failed(exc, doing)
        else:
            logger.error("%s on Redis queue %r failed", doing, self._store.queue, exc_info=exc)
        await anyio.sleep(next(waits))
        await self._store.ensure()  # the client's task again, if a failure ended it

    # -- settling ------------------------------------------------------------------------

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        self._settlements.add(item, outcome, reason=reason, error=error, delay=delay)

    async def flush(self) -> None:
        """Write the settlements made so far (see `Settlements.flush`)."""
        await self._settlements.flush()

    def ride_with(self, rider: Rider) -> None:
        """Let acknowledgements ride along with *rider*'s writes (the channel's enqueue
        batches): while one is under way or queued, the flusher leaves them to it."""
        self._settlements.rider = rider

    def ride(self) -> Ride:
        """What a producers' write about to start carries: the acknowledgements made so
        far, and how many new entries to read (once the pool consumes, until close)."""
        read = 0
        if self._opened and not self._closed:
            read = max(0, self._waiting + _PREFETCH - len(self._buffer))
        return self._settlements.ride(read)

    def rode(self, ride: Ride, got: list[tuple[bytes, Mapping[bytes, bytes]]]) -> None:
        """The write carrying *ride* succeeded: *got* are the entries it read."""
        self._settlements.rode(ride)
        if got:
            for entry, fields in got:
                self._take(entry, fields, 1)
            self._wake(len(self._buffer) + (0 if self._fetching else 1))

    def unride(self, ride: Ride) -> None:
        """The write carrying *ride* failed: its acknowledgements go to the flusher."""
        self._settlements.unride(ride)

    # -- housekeeping --------------------------------------------------------------------

    async def run(self) -> None:
        """Flush settlements, renew leases, reclaim crashed consumers' entries, move
        due delayed messages; until cancelled."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._flush_loop, name="workpool redis flush")
            group.start_soon(self._renew_loop, name="workpool redis leases")
            group.start_soon(self._sweep_loop, name="workpool redis reclaim")
            group.start_soon(self._promote_loop, name="workpool redis delayed")

    async def _flush_loop(self) -> None:
        waits = backoff()
        settlements = self._settlements
        while True:
            await settlements.wanted()
            try:
                await settlements.flush()
            except Exception as exc:
                await self._trouble(exc, "acknowledging", waits)
            else:
                waits = backoff()

    async def _renew_loop(self) -> None:
        waits = backoff()
        while True:
            await anyio.sleep(self._lease / 3)
            entries = [e for e, held in self._held.items() if not (held.lost or held.settled)]
            try:
                for start in range(0, len(entries), BATCH):
                    lost = await self._store.renew(entries[start : start + BATCH])
                    self._lost(lost)
            except Exception as exc:
                await self._trouble(exc, "renewing leases", waits)
            else:
                waits = backoff()

    def _lost(self, entries: list[bytes]) -> None:
        for entry in entries:
            held = self._held.get(entry)
            if held is None or held.lost or held.settled:
                continue  # an entry acknowledged meanwhile is no longer pending: not lost
            held.lost = True
            logger.warning(
                "the lease of Redis entry %s (%s) was lost: another consumer took it over; "
                "it will not be acknowledged here",
                entry.decode(),
                held.fields.get(b"name", b"").decode("utf-8", "replace"),
            )
            for item in self._buffer:
                if item.receipt is held:  # not started: forget it
                    self._buffer.remove(item)
                    del self._held[entry]
                    break

    async def _sweep_loop(self) -> None:
        interval = max(0.05, min(self._lease / 4, 5.0))
        lease_ms = milliseconds(self._lease)
        waits = backoff()
        while True:
            await anyio.sleep(interval * random.uniform(0.5, 1.5))
            free = self._waiting - len(self._buffer)
            if free <= 0 or self._closed:
                continue
            try:
                found = await self._store.reclaim(min(free, 100), lease_ms, milliseconds(interval))
            except Exception as exc:
                await self._trouble(exc, "reclaiming", waits)
                continue
            waits = backoff()
            for entry, flat, count in found or ():
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                self._take(entry, fields, int(count))
            if found:
                self._wake(len(self._buffer))

    async def _promote_loop(self) -> None:
        waits = backoff()
        while True:
            try:
                moved, wait_ms = await self._store.promote()
            except Exception as exc:
                await self._trouble(exc, "moving delayed messages", waits)
                continue
            waits = backoff()
            if moved >= 100:
                await anyio.lowlevel.checkpoint()
            else:
                await anyio.sleep(min(0.5, max(0.005, wait_ms / 1000)) if wait_ms >= 0 else 0.5)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()
        self._wake(len(self._waiters))

    async def aclose(self) -> None:
        """Write what is left to settle, hand back what was read but never handed out
        (and anything a cancelled read left pending), within ``outage_timeout``."""
        self.close()
        if not self._opened:
            return
        self._opened = False
        for item in self._buffer:
            self._held.pop(item.receipt.entry, None)  # type: ignore[attr-defined]
        self._buffer.clear()
        waits = backoff()
        with anyio.move_on_after(self._outage_timeout) as bound:
            while True:
                try:
                    await self._settlements.flush()
                    await self._store.retire(list(self._held))
                    break
                except Exception as exc:
                    await self._trouble(exc, "closing", waits)
        if bound.cancelled_caught:
            logger.error(
                "Redis queue %r: %d settlement(s) could not be written within %g s; those "
                "items are delivered again once their lease expires",
                self._store.queue,
                self._settlements.pending,
                self._outage_timeout,
            )
