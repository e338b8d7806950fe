"""`SqliteChannel`: a durable channel in one SQLite file, embedded, no server.

Producers wait for the commit that holds their item; consumers claim due items with
a lease, renewed from `run` while they run, and settle each one after its outcome
(acknowledge, dead-letter, release, reschedule). The SQL is in `_sqlite_sql`, the
connection thread and its group commit in `_sqlite_store`, the arguments and the
decoding of claimed messages in `_sqlite_items`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, final
from uuid import UUID

from . import _sqlite_sql as sql
from ._checks import check_seconds
from ._exceptions import PoolClosedError, QueueFullError
from ._full import FullMode
from ._item import WorkItem
from ._payload import DeadLetter, plain_arguments
from ._session import Session
from ._sqlite_claims import Claims
from ._sqlite_items import ChannelOptions, check_delay, check_key
from ._sqlite_store import SqliteStore
from ._task import check_durable_call, encode_call
from ._uuid import new_uuid4
from ._watchdog import loop_poster

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Mapping

    from ._hooks import Hook
    from ._item import Work
    from ._retry import RetryPolicy
    from ._seam import Settle

__all__ = ["SqliteChannel"]


@final
class SqliteChannel:
    """A durable channel in an SQLite file: work survives crashes and restarts.

    Several pools (processes) on one file share its work. Items are named task
    calls (``@task`` functions bound with ``.bind(...)``) stored as JSON; delivery is
    at least once (see the README, "Durable work").

    Args:
        path: the database file (created if missing; on a local filesystem: WAL).
        queue: the queue's name within the file.
        capacity: at most this many unfinished items (queued, delayed, running) in
            the queue; ``None``: bounded by the disk only.
        full_mode: ``"wait"`` for room, or ``"reject"`` (`QueueFullError`).
        lease: seconds a claim holds an item before another consumer may take it;
            renewed while the item runs.
        max_deliveries: an item delivered this many times without an outcome (its
            process died each time) is dead-lettered (``"delivery_limit"``).
        synchronous: ``PRAGMA synchronous``: ``"normal"`` loses nothing when the
            process crashes (only on power loss); ``"full"`` not even then.
        outage_timeout: how long ``enqueue`` keeps trying a store it cannot write
            before `ChannelUnavailableError`.
        max_message_bytes: the largest JSON payload ``enqueue`` accepts.
        prefetch: items claimed ahead of the waiting consumers and kept in a local
            buffer (their leases renewed, handed out FIFO, handed back at once when
            the channel closes); ``None``: 32; ``0``: claim only for waiting
            consumers (fairer for long tasks shared by several processes).

    Raises:
        ValueError: a drop ``full_mode``, ``lease <= 0``, ``max_deliveries < 1``, an
            unknown ``synchronous``, a missing directory, a ``prefetch`` that is not
            an int of 0 or more.
        RuntimeError: SQLite older than 3.35.
    """

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue: str = "default",
        capacity: int | None = None,
        full_mode: FullMode | str = "wait",
        lease: float = 30.0,
        max_deliveries: int = 5,
        synchronous: str = "normal",
        outage_timeout: float = 10.0,
        max_message_bytes: int = 1_048_576,
        prefetch: int | None = None,
    ) -> None:
        sql.check_sqlite_version()
        options = self._options = ChannelOptions(
            path,
            queue,
            capacity,
            full_mode,
            lease,
            max_deliveries,
            synchronous,
            outage_timeout,
            max_message_bytes,
            prefetch,
        )
        self.max_local_backoff = options.lease / 2
        self._owner = str(new_uuid4())
        self._store = SqliteStore(
            options.path,
            queue_name=options.queue,
            owner=self._owner,
            synchronous=options.synchronous,
            busy_timeout=min(1.0, options.outage_timeout / 4),
            label=f"{options.path!r} queue {options.queue!r}",
        )
        self._claims = Claims(self._store, options, f"{options.path!r} queue {options.queue!r}")
        self._enqueued = 0
        self._rejected = 0
        self._drop_hooks: list[Hook] = []

    # -- introspection -------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file."""
        return self._options.path

    @property
    def queue(self) -> str:
        """The queue's name."""
        return self._options.queue

    @property
    def lease(self) -> float:
        """Seconds a claim holds an item (renewed while it runs)."""
        return self._options.lease

    @property
    def max_deliveries(self) -> int:
        """Deliveries without an outcome before an item is dead-lettered."""
        return self._options.max_deliveries

    @property
    def prefetch(self) -> int:
        """Items claimed ahead of the waiting consumers, at most."""
        return self._options.prefetch

    @property
    def capacity(self) -> int | None:
        """At most this many unfinished items in the queue (``None``: no bound)."""
        return self._options.capacity

    @property
    def full_mode(self) -> FullMode:
        """What ``enqueue`` does when the queue is full."""
        return self._options.full_mode

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._claims.closed

    @property
    def enqueued_total(self) -> int:
        """Items this channel stored (an existing ``key=`` adds none)."""
        return self._enqueued

    @property
    def dropped_total(self) -> int:
        """Always 0: a durable channel never drops what it accepted."""
        return 0

    @property
    def rejected_total(self) -> int:
        """`QueueFullError` raised so far."""
        return self._rejected

    def qsize(self) -> int:
        """Items waiting in the queue (all processes; refreshed while the pool runs)."""
        return self._claims.queued

    def __repr__(self) -> str:
        return (
            f"<SqliteChannel {self._options.path!r} queue={self._options.queue!r}"
            f"{' closed' if self._claims.closed else ''}>"
        )

    # -- producers -----------------------------------------------------------------------

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
        """Store a task call; return once it is committed, with the message's ``id``.

        Args:
            work: a `TaskCall` (``my_task.bind(...)``).
            parent_session: recorded as the item's ``parent_session_id`` (for logs).
            timeout: per-attempt timeout in seconds (default: the task's).
            delay: seconds before the item may start.
            key: while an unfinished item with this key is in the queue, add nothing
                and return that item (same ``id``).

        Raises:
            TypeError: *work* is not a `TaskCall`, an argument does not travel as
                JSON, ``retry=`` or ``name=`` given.
            ValueError: the payload is over ``max_message_bytes``.
            PoolClosedError: the channel is closed.
            QueueFullError: the queue is full in ``reject`` mode.
            ChannelUnavailableError: the store could not be written within
                ``outage_timeout``; the item may or may not be stored.

        A call cancelled while it waits for the commit may still have stored the
        item (``key=`` makes enqueueing it again harmless).
        """
        options = self._options
        work = check_durable_call(work, retry, name)
        if parent_session is not None and not isinstance(parent_session, Session):
            raise TypeError(
                f"parent_session must be a workpool.Session or None, got {parent_session!r}"
            )
        seconds = check_delay(delay)
        check_key(key)
        item_timeout = None if timeout is None else check_seconds(timeout, "timeout")
        payload = encode_call(work, max_bytes=options.max_message_bytes).decode()
        if self._claims.closed:
            raise PoolClosedError(
                "the channel is closed and accepts no more work; enqueue before shutdown"
            )
        message_id = new_uuid4()
        parent = None if parent_session is None else parent_session.id
        while True:
            asked = time.monotonic()  # the store's due time is later: batch start + delay
            status, existing = await self._store.call(
                sql.enqueue,
                str(message_id),
                work.name,
                payload,
                key,
                item_timeout,
                seconds,
                None if parent is None else str(parent),
                options.capacity,
                deadline=time.monotonic() + options.outage_timeout,
            )
            if status == "added":
                self._enqueued += 1
                self._claims.wake(due=seconds == 0)
                break
            if status == "exists":
                message_id = UUID(existing)
                break
            if options.full_mode is FullMode.REJECT:
                self._rejected += 1
                raise QueueFullError(
                    f"the queue {options.queue!r} is full ({options.capacity} unfinished "
                    "items) and its full_mode is 'reject'; retry later or raise the capacity"
                )
            if self._claims.closed:
                raise PoolClosedError("the channel closed while enqueue waited for room")
            await self._claims.wait_for_room()
        item = WorkItem.restore(
            work,
            id=message_id,
            name=work.name,
            timeout=item_timeout if item_timeout is not None else work.task.timeout,
            deliveries=0,
            attempts=0,
            receipt=None,
            parent_session_id=parent,
            key=key,
        )
        if seconds:
            item.not_before = asked + seconds
        return item

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
        """Not on a durable channel: an item is accepted only once it is stored.

        Raises:
            TypeError: always; use ``await channel.enqueue(...)`` (or
                ``pool.enqueue_threadsafe`` from another thread).
        """
        raise TypeError(
            "a durable channel accepts an item only once the store has it, which takes "
            "an await: use 'await enqueue(...)' (or pool.enqueue_threadsafe() from a thread)"
        )

    # -- consumers -----------------------------------------------------------------------

    async def open(self, tasks: Mapping[str, Any]) -> None:
        """Take the worker's task registry; check that the store can be opened.

        Raises:
            ChannelUnavailableError: the store could not be opened within
                ``outage_timeout``.
        """
        self._claims.tasks = tasks
        self._claims.post = loop_poster()
        await self._store.call(
            sql.next_due, writes=False, deadline=time.monotonic() + self._options.outage_timeout
        )

    async def run(self) -> None:
        """Renew the leases of held items and refresh `qsize`, until cancelled."""
        await self._claims.run()

    def claim_nowait(self) -> WorkItem:
        """An item claimed already for a waiting consumer.

        Raises:
            anyio.WouldBlock: none.
            PoolClosedError: the channel is closed (it stops claiming at once).
        """
        return self._claims.claim_nowait()

    async def claim(self) -> WorkItem:
        """Claim the next due item, waiting for one; FIFO among due items. Claims are
        made for the consumers waiting plus up to ``prefetch`` items ahead.

        Raises:
            PoolClosedError: the channel is closed.
        """
        return await self._claims.claim()

    def settle(
        self,
        item: WorkItem,
        outcome: Settle,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        """Write the outcome of a claimed item (in the next commit; `aclose` flushes)."""
        self._claims.settle(item, outcome, reason, error, delay)

    async def join(self) -> None:
        """Wait until the queue has no unfinished item (in any process)."""
        await self._claims.join()

    def close(self) -> None:
        """Stop intake and claiming; hand back what was claimed and not started."""
        self._claims.close()

    def take_all(self) -> list[WorkItem]:
        """Nothing: queued items stay in the store."""
        return []

    async def aclose(self) -> None:
        """Close, write every pending outcome, and stop the connection thread."""
        self._claims.close()
        await self._claims.claim_landed()
        await self._store.stop()

    # -- dead letters --------------------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The queue's dead letters, oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        rows = await self._call(sql.dead_letters, limit, writes=False)
        letters = []
        for message_id, name, payload, reason, error, traceback, attempts, deliveries, at in rows:
            args, kwargs = plain_arguments(payload)
            letters.append(
                DeadLetter(
                    id=UUID(message_id),
                    name=name,
                    args=args,
                    kwargs=kwargs,
                    reason=reason,
                    error=error,
                    traceback=traceback,
                    attempts=attempts,
                    deliveries=deliveries,
                    failed_at=datetime.fromtimestamp(at, UTC),
                )
            )
        return letters

    async def replay(self, ids: Iterable[UUID | str] | None = None) -> int:
        """Put dead letters back in the queue (all if *ids* is None), counts reset;
        return how many."""
        moved: int = await self._call(sql.replay, _id_texts(ids))
        if moved:
            self._claims.wake(due=True)
        return moved

    async def purge_dead(self, ids: Iterable[UUID | str] | None = None) -> int:
        """Delete dead letters (all if *ids* is None); return how many."""
        purged: int = await self._call(sql.purge_dead, _id_texts(ids))
        return purged

    async def _call(self, op: Callable[..., Any], *args: Any, writes: bool = True) -> Any:
        deadline = time.monotonic() + self._options.outage_timeout
        return await self._store.call(op, *args, writes=writes, deadline=deadline)

    # -- drop hooks: nothing is ever dropped ---------------------------------------------

    def add_drop_hook(self, hook: Hook) -> None:
        """Accepted for the seam; a durable channel never drops an item."""
        if not callable(hook):
            raise TypeError(f"a drop hook must be callable, got {hook!r}")
        self._drop_hooks.append(hook)

    def remove_drop_hook(self, hook: Hook) -> None:
        """Forget *hook*; no effect if it was not added."""
        if hook in self._drop_hooks:
            self._drop_hooks.remove(hook)


def _id_texts(ids: Iterable[UUID | str] | None) -> list[str] | None:
    if ids is None:
        return None
    if isinstance(ids, str | UUID):
        raise TypeError("ids must be a list of ids (or None for all), not one id")
    return [str(UUID(str(value))) for value in ids]
