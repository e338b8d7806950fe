"""`RedisChannel`: a durable channel on Redis Streams, shared by processes and hosts.

Install the extra: ``pip install workpool[redis]`` (coredis 6, asyncio and trio)::

    from workpool import WorkerPool
    from workpool.redis import RedisChannel

    channel = RedisChannel("redis://redis.internal:6379/0", queue="mail")
    async with WorkerPool(channel=channel, tasks=[send_receipt], consumers=16) as pool:
        await pool.enqueue(send_receipt.bind(42, email="a@example.com"))

Keys live under ``workpool:{<queue>}:`` (one hash slot): ``stream`` (the work, one
consumer group ``workpool``; never trimmed, acknowledged entries are deleted),
``delayed`` and ``body`` (messages due later), ``keys`` (``key=`` to message id),
``dead`` (dead letters, capped oldest-first), and small bookkeeping keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import anyio

from ._checks import check_count, check_seconds, check_timeout
from ._delayed import check_delay, check_key
from ._exceptions import PoolClosedError, QueueFullError
from ._full import FullMode
from ._item import WorkItem, new_uuid4
from ._redis_adder import Adder
from ._redis_consumer import RedisConsumer
from ._redis_message import Outage, backoff, dead_letter_from, milliseconds
from ._redis_store import RedisStore
from ._task import check_durable_call, encode_call
from ._urls import mask_url

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

    from ._hooks import Hook
    from ._payload import DeadLetter
    from ._retry import RetryPolicy
    from ._seam import Settle
    from ._session import Session
    from ._task import Task

__all__ = ["RedisChannel"]

_ADDED: Final = 1
_KEY_TAKEN: Final = 2
_FULL: Final = 3


@final
class RedisChannel:
    """A durable channel on Redis Streams (DESIGN section 5).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, or ``rediss://`` for TLS.
            The password is never logged (``repr`` masks it).
        queue: the queue's name; pools on the same Redis and queue share its work.
        capacity: bound on unfinished messages (queued, delayed, running); ``None``:
            bounded by Redis's memory only.
        full_mode: ``"wait"`` (``enqueue`` waits for room) or ``"reject"``
            (`QueueFullError`).
        lease: seconds a claim lasts without renewal; a crashed process's items are
            claimed again once it runs out.
        max_deliveries: claims without an outcome (the process died) before a
            message is dead-lettered with reason ``"delivery_limit"``.
        outage_timeout: seconds ``enqueue`` keeps trying while Redis is unreachable
            before `ChannelUnavailableError`.
        max_message_bytes: the largest JSON payload ``enqueue`` accepts.

    Raises:
        ValueError: a drop ``full_mode``, ``lease <= 0``, ``max_deliveries < 1``,
            a URL that is not ``redis://`` or ``rediss://``, an empty queue name.
    """

    durable = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        queue: str = "default",
        capacity: int | None = None,
        full_mode: FullMode | str = "wait",
        lease: float = 30.0,
        max_deliveries: int = 5,
        outage_timeout: float = 10.0,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss"):
            shown = mask_url(url) if isinstance(url, str) else repr(url)
            raise ValueError(f"RedisChannel needs a redis:// or rediss:// URL, got {shown}")
        if not isinstance(queue, str) or not queue or any(c in queue for c in "{}"):
            raise ValueError(f"queue must be a non-empty name without braces, got {queue!r}")
        if capacity is not None:
            check_count(capacity, "capacity")
        mode = FullMode(full_mode)
        if mode not in (FullMode.WAIT, FullMode.REJECT):
            raise ValueError(
                f"a Redis channel takes full_mode 'wait' or 'reject', got {str(mode)!r}: "
                "a durable channel never drops accepted work"
            )
        self.lease = check_seconds(lease, "lease")
        self.max_deliveries = check_count(max_deliveries, "max_deliveries")
        self.outage_timeout = check_seconds(outage_timeout, "outage_timeout")
        self.max_message_bytes = check_count(max_message_bytes, "max_message_bytes")
        self.queue = queue
        self.full_mode = mode
        self.max_local_backoff = self.lease / 2
        self._url = url
        self._capacity = capacity
        self._store = RedisStore(url, queue)
        self._outage = Outage(f"{mask_url(url)} queue {queue!r}")
        self._consumer = RedisConsumer(
            self._store,
            lease=self.lease,
            max_deliveries=self.max_deliveries,
            outage=self._outage,
            outage_timeout=self.outage_timeout,
        )
        self._closed = False
        self._enqueued = 0
        self._rejected = 0
        self._drop_hooks: list[Hook] = []
        self._adder = Adder(self._write)
        self._consumer.ride_with(self._adder)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisChannel:
        """A channel from ``redis://host:6379/0?queue=mail`` (``queue`` in the query;
        other keyword options as in the constructor, which win over the query)."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        rest = [(name, value) for name, value in query if name != "queue"]
        for name, value in query:
            if name == "queue":
                options.setdefault("queue", value)
        bare = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
        return cls(bare, **options)

    @property
    def url(self) -> str:
        """The URL, its password masked."""
        return mask_url(self._url)

    def __repr__(self) -> str:
        return f"<RedisChannel {self.url} queue={self.queue!r}>"

    # -- producers ---------------------------------------------------------------------

    @property
    def capacity(self) -> int | None:
        return self._capacity

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
        return self._rejected

    def qsize(self) -> int:
        """Messages read from Redis and not yet handed to a consumer (in this process);
        `unfinished` counts the queue in Redis."""
        return self._consumer.buffered

    async def unfinished(self) -> int:
        """Messages queued, delayed or running in Redis, for every process."""
        await self._store.ensure()
        count: int = await self._consumer.retrying(self._store.unfinished, "counting")
        return count

    async def enqueue(
        self,
        work: Any,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> WorkItem:
        """Store a named task call; return once Redis has it (see DESIGN section 5).

        Raises:
            TypeError: *work* is not a `TaskCall`, an argument does not travel as
                JSON, ``retry=`` was given, or ``name=`` differs from the task's.
            ValueError: the payload is over ``max_message_bytes``; a bad ``delay``.
            PoolClosedError: the channel is closed.
            QueueFullError: full, in ``reject`` mode.
            ChannelUnavailableError: Redis unreachable for ``outage_timeout`` seconds.
        """
        work = check_durable_call(work, retry, name)
        timeout = check_timeout(timeout)
        delay_ms = 0 if delay is None else milliseconds(check_delay(delay))
        if key is not None:
            check_key(key)
        if self._closed:
            raise PoolClosedError("the Redis channel is closed: it accepts nothing more")
        payload = encode_call(work, max_bytes=self.max_message_bytes)
        message_id = new_uuid4()
        parent = parent_session.id.hex if parent_session is not None else ""
        message = (
            message_id.hex,
            work.name,
            payload,
            "0",
            "0",
            "" if timeout is None else repr(timeout),
            key or "",
            parent,
            delay_ms,
        )
        code, value = await self._add(message)
        item_id = message_id
        if code == _KEY_TAKEN:
            item_id = UUID(hex=value.decode())
        else:
            self._enqueued += 1
        return WorkItem.restore(
            work,
            id=item_id,
            name=work.name,
            timeout=timeout if timeout is not None else work.task.timeout,
            deliveries=0,
            attempts=0,
            receipt=None,
            parent_session_id=parent_session.id if parent_session is not None else None,
            key=key,
        )

    async def _add(self, message: tuple[Any, ...]) -> tuple[int, bytes]:
        """Store *message* (with the enqueue calls made meanwhile): until Redis has it,
        or refuses it for good."""
        await self._store.ensure()
        full_waits: Iterator[float] | None = None
        while True:
            code, value = await self._adder.add(message)
            if code != _FULL:
                return code, value
            if full_waits is None:
                full_waits = backoff(0.01, 0.5)
            if self.full_mode is FullMode.REJECT:
                self._rejected += 1
                raise QueueFullError(
                    f"Redis queue {self.queue!r} is full ({self._capacity} unfinished messages)"
                )
            await anyio.sleep(next(full_waits))
            if self._closed:
                raise PoolClosedError("the Redis channel is closed: it accepts nothing more")

    async def _write(self, messages: list[Sequence[Any]]) -> list[tuple[int, bytes]]:
        store, consumer = self._store, self._consumer
        capacity = -1 if self._capacity is None else self._capacity
        seen_ms = milliseconds(self.outage_timeout * 2 + 60)
        # This process's acknowledgements, and a read for its waiting consumers, ride
        # along: one script call instead of three.
        ride = consumer.ride()
        read = ride.read
        call = new_uuid4().hex

        async def add() -> tuple[list[tuple[int, bytes]], list[Any]]:
            nonlocal read
            want, read = read, 0  # a retry reads nothing: the first try may have read
            return await store.add(
                messages,
                call=call,
                capacity=capacity,
                seen_ms=seen_ms,
                acks=ride.entries,
                freed=ride.freed,
                read=want,
            )

        # Safe to retry: the script adds nothing twice (a seen key per call), and
        # acknowledging twice is harmless.
        try:
            written, got = await consumer.retrying(add, "enqueueing")
        except BaseException:
            consumer.unride(ride)
            raise
        consumer.rode(ride, got)
        return written  # type: ignore[no-any-return]

    def enqueue_nowait(self, *args: Any, **kwargs: Any) -> WorkItem:
        """Not supported: storing a message in Redis needs a round trip."""
        raise TypeError(
            "a Redis channel has no enqueue_nowait(): storing a message waits for Redis; "
            "use await enqueue(...)"
        )

    # -- consumers (the pool) --------------------------------------------------------------

    async def open(self, tasks: Mapping[str, Task[...]]) -> None:
        await self._consumer.open(tasks)

    async def run(self) -> None:
        await self._consumer.run()

    async def claim(self) -> WorkItem:
        return await self._consumer.claim()

    def claim_nowait(self) -> WorkItem:
        return self._consumer.claim_nowait()

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        self._consumer.settle(item, outcome, reason=reason, error=error, delay=delay)

    async def join(self) -> None:
        """Wait until no message is queued, delayed or running in Redis."""
        # Polled: other processes change what is in Redis.
        while self._consumer.held or await self.unfinished():  # noqa: ASYNC110
            await anyio.sleep(0.05)

    def close(self) -> None:
        self._closed = True
        self._consumer.close()

    def take_all(self) -> list[WorkItem]:
        return []  # what is queued stays in Redis; what was read is handed back at aclose

    async def aclose(self) -> None:
        """Close; write what is left to settle, hand back what was read but not run, and
        close the connections. Idempotent."""
        self.close()
        try:
            adder = self._adder
            with anyio.move_on_after(self.outage_timeout):
                while adder.busy:  # a write under way may carry settlements or a read
                    await adder.changed()
            await self._consumer.aclose()
        finally:
            await self._store.stop()

    def add_drop_hook(self, hook: Hook) -> None:
        self._drop_hooks.append(hook)  # a durable channel drops nothing

    def remove_drop_hook(self, hook: Hook) -> None:
        if hook in self._drop_hooks:
            self._drop_hooks.remove(hook)

    # -- dead letters ------------------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The dead letters, oldest first (at most *limit*)."""
        check_count(limit, "limit")
        entries = await self._dead_entries(limit)
        return [dead_letter_from(entry, fields) for entry, fields in entries]

    async def replay(self, ids: Collection[UUID] | None = None) -> int:
        """Put dead letters back in the queue (all when *ids* is None), attempts and
        deliveries reset; return how many."""
        entries = await self._matching(ids)
        count = 0
        for start in range(0, len(entries), 200):
            chunk = entries[start : start + 200]

            async def replay(chunk: list[bytes] = chunk) -> int:
                return await self._store.replay(chunk)

            count += await self._consumer.retrying(replay, "replaying dead letters")
        return count

    async def purge_dead(self, ids: Collection[UUID] | None = None) -> int:
        """Delete dead letters (all when *ids* is None); return how many."""
        if ids is None:
            await self._store.ensure()
            purged: int = await self._consumer.retrying(self._store.purge_all, "purging")
            return purged
        entries = await self._matching(ids)
        if not entries:
            return 0

        async def purge() -> int:
            return await self._store.purge(entries)

        count: int = await self._consumer.retrying(purge, "purging dead letters")
        return count

    async def _dead_entries(self, limit: int | None) -> list[tuple[bytes, Any]]:
        await self._store.ensure()
        out: list[tuple[bytes, Any]] = []
        after: bytes | None = None
        while limit is None or len(out) < limit:
            page = 1000 if limit is None else min(1000, limit - len(out))

            async def read(after: bytes | None = after, page: int = page) -> Any:
                return await self._store.dead_entries(page, after)

            entries = await self._consumer.retrying(read, "reading dead letters")
            out += [(entry.identifier, entry.field_values) for entry in entries]
            if len(entries) < page:
                break
            after = entries[-1].identifier
        return out

    async def _matching(self, ids: Collection[UUID] | None) -> list[bytes]:
        wanted: Callable[[bytes], bool]
        if ids is None:
            wanted = lambda _: True  # noqa: E731
        else:
            hexes = {i.hex.encode() for i in ids}
            wanted = hexes.__contains__
        return [entry for entry, fields in await self._dead_entries(None) if wanted(fields[b"id"])]
