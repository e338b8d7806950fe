"""Settlements of the Redis channel: what consumers settled, until Redis has it.

Acknowledgements (``XACK`` + ``XDEL``) of everything that finished meanwhile are
written in one script call, by the flusher or, when this process also enqueues, by
the producers' next write (they *ride* along: `Ride`). Dead letters, releases and
reschedules are written one script call each, by the flusher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol, final

import anyio
from coredis.exceptions import RedisError

from ._log import logger
from ._redis_message import Held, letter_fields, message_fields, milliseconds
from ._seam import Settle

if TYPE_CHECKING:
    from ._item import WorkItem
    from ._redis_message import Outage
    from ._redis_store import RedisStore

__all__ = ["BATCH", "Ride", "Rider", "Settlements"]

BATCH: Final = 500  # entries per acknowledgement or renewal script call
_DONE: Final = Settle.DONE
_DEAD: Final = Settle.DEAD
_RELEASED: Final = Settle.RELEASED


@final
class Ride:
    """What a producers' write carries for the consumers (`Settlements.ride`).

    Attributes:
        held: the receipts acknowledged.
        entries: their stream entry ids.
        freed: ``key=`` keys to free with them (key, message id pairs, flat).
        read: how many new entries the write reads for this process's consumers.
    """

    __slots__ = ("entries", "freed", "held", "read")

    def __init__(self, held: list[Held], freed: list[bytes], read: int) -> None:
        self.held = held
        self.entries = [receipt.entry for receipt in held]
        self.freed = freed
        self.read = read


class Rider(Protocol):
    """The channel's enqueue batches (`workpool._redis_adder.Adder`)."""

    @property
    def busy(self) -> bool: ...

    async def changed(self) -> None: ...


def _freed(receipts: list[Held]) -> list[bytes]:
    freed: list[bytes] = []
    for receipt in receipts:
        key = receipt.fields.get(b"key")
        if key:
            freed += (key, receipt.fields.get(b"id", b""))
    return freed


@final
class Settlements:
    """Settlements made in this process and not yet written.

    Args:
        store: the queue's store.
        held: the consumer's receipts by entry id (shared): a written settlement
            removes its entry.
        outage: the channel's outage tracker.
    """

    def __init__(self, store: RedisStore, held: dict[bytes, Held], outage: Outage) -> None:
        self._store = store
        self._held = held
        self._outage = outage
        self._acks: list[Held] = []
        self._ops: list[tuple[Settle, Held, Any]] = []
        self._wanted: anyio.Event | None = None
        self.rider: Rider | None = None

    @property
    def pending(self) -> int:
        """Settlements not written yet."""
        return len(self._acks) + len(self._ops)

    def add(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        """Settle *item* (see `workpool._seam.Channel.settle`)."""
        held = item.receipt
        if not isinstance(held, Held) or held.entry not in self._held:
            raise RuntimeError(f"{item!r} was not claimed from this channel or settled twice")
        if held.lost:
            del self._held[held.entry]
            logger.warning(
                "%s (%s) finished %s after its lease was lost: not acknowledged here "
                "(another consumer took it over)",
                item.name,
                item.id,
                outcome.value,
                extra={"work_name": item.name, "item_id": item.id},
            )
            return
        held.settled = True  # renewals skip it while its settlement is written
        if outcome is _DONE:
            self._acks.append(held)
        elif outcome is _DEAD:
            letter = letter_fields(item, held.fields, reason or "failed", error)
            self._ops.append((outcome, held, letter))
        elif outcome is _RELEASED:
            attempts = int(held.fields.get(b"att") or 0)  # attempts were not used up
            self._ops.append(
                (outcome, held, message_fields(held.fields, attempts, item.deliveries))
            )
        else:
            fields = message_fields(held.fields, item.attempts, item.deliveries)
            self._ops.append((outcome, held, (milliseconds(delay), fields)))
        self._want()

    def _want(self) -> None:
        wanted = self._wanted
        if wanted is not None:
            self._wanted = None
            wanted.set()

    # -- riding along with the producers' writes ----------------------------------------

    def ride(self, read: int) -> Ride:
        """Take the acknowledgements made so far for a producers' write about to start,
        which also reads *read* new entries."""
        acks = self._acks
        taken = acks[:BATCH]
        del acks[: len(taken)]
        return Ride(taken, _freed(taken), read)

    def rode(self, ride: Ride) -> None:
        """The write carrying *ride* succeeded."""
        held = self._held
        for receipt in ride.held:
            held.pop(receipt.entry, None)

    def unride(self, ride: Ride) -> None:
        """The write carrying *ride* failed: its acknowledgements go to the flusher."""
        if ride.held:
            self._acks[:0] = ride.held
            self._want()

    # -- writing -----------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the settlements made so far (raises on the first failure Redis may get
        over; what was not written stays for the next call)."""
        store, held = self._store, self._held
        while self._acks or self._ops:
            acks = self._acks[:BATCH]
            if acks:
                # Taken out while written: a producers' write may carry the next ones.
                del self._acks[: len(acks)]
                try:
                    await store.ack([receipt.entry for receipt in acks], _freed(acks))
                except BaseException:
                    self._acks[:0] = acks
                    raise
                for receipt in acks:
                    held.pop(receipt.entry, None)
            while self._ops:
                outcome, receipt, data = self._ops[0]
                fields = receipt.fields
                message_id = fields.get(b"id", b"")
                try:
                    if outcome is _DEAD:
                        await store.bury(receipt.entry, message_id, fields.get(b"key", b""), data)
                    elif outcome is _RELEASED:
                        await store.release(receipt.entry, data)
                    else:
                        await store.reschedule(receipt.entry, message_id, data[0], data[1])
                except Exception as exc:
                    if isinstance(exc, RedisError):
                        raise  # Redis unreachable or refusing for now: retried
                    # A bug, not Redis: never block the settlements behind it.
                    logger.error(
                        "could not write the %s settlement of Redis entry %s; it is "
                        "delivered again once its lease expires",
                        outcome.value,
                        receipt.entry.decode(),
                        exc_info=exc,
                    )
                del self._ops[0]
                held.pop(receipt.entry, None)
        self._outage.recovered()

    async def wanted(self) -> None:
        """Wait until there is something the flusher should write now: settlements,
        except acknowledgements that the producers' next write will carry."""
        while True:
            if not self._acks and not self._ops:
                wanted = self._wanted = anyio.Event()
                await wanted.wait()
            rider = self.rider
            if rider is not None and not self._ops and rider.busy:
                await rider.changed()  # its next write carries the acknowledgements
                continue
            return
