"""The SQLite channel's connection thread: group commit, and outages.

One thread per channel owns the connection (SQLite connections belong to one
thread). Callers on the event loop hand it `Request` objects through a queue; the
thread takes everything that arrived while it was busy and runs it in **one
transaction** (group commit), then tells each caller on its own event loop, once per
batch. A producer thus waits for the commit that holds its item, and a hundred
producers share one commit.

When the store cannot be written (the file is locked by another process beyond the
busy timeout, the disk fails), the batch is rolled back and tried again with a capped
backoff; requests with a deadline (``enqueue``: the channel's ``outage_timeout``)
fail with `ChannelUnavailableError` once it has passed, the others (acknowledgements)
wait for the store to come back. One WARNING when an outage starts, one INFO when it
ends.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from ._exceptions import ChannelUnavailableError
from ._log import logger
from ._sqlite_sql import SCHEMA, Batch
from ._watchdog import loop_poster

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Request", "SqliteStore"]

Post = Callable[[Callable[[], object]], object]

_MAX_BATCH: Final = 2000  # requests per transaction, so that one commit stays short
_BACKOFF_FIRST: Final = 0.02
_BACKOFF_MAX: Final = 0.5
# sqlite3 errors that say the store cannot be used right now (locked, I/O, a file
# that is not a database); the others (IntegrityError...) belong to one request.
_STORE_ERRORS: Final = (sqlite3.OperationalError,)


class _Skipped(Exception):
    """A request cancelled before the thread ran it."""


_SKIPPED: Final = _Skipped("cancelled before it ran")


def _is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, _STORE_ERRORS) or type(exc) is sqlite3.DatabaseError


@final
class Request:
    """One operation for the connection thread.

    Attributes:
        op: ``op(batch, *args)``, run in a batch's transaction (``None``: a marker
            that completes once everything submitted before it has).
        args: its arguments.
        writes: whether it writes (a batch of reads only takes no write lock).
        deadline: ``time.monotonic()`` after which an outage fails it.
        after: run in the thread on the result once committed (decoding).
        notify: called on the caller's event loop with the request once done.
        post: schedules a callback on that loop (from the thread).
        cancelled: the caller gave up: skip it if the thread has not run it yet (it
            is still notified, with an error).
        result: the operation's result.
        error: the exception it raised, or the outage's `ChannelUnavailableError`.
    """

    __slots__ = (
        "after",
        "args",
        "cancelled",
        "deadline",
        "done",
        "error",
        "notify",
        "op",
        "post",
        "result",
        "writes",
    )

    def __init__(
        self,
        op: Callable[..., Any] | None,
        args: tuple[Any, ...] = (),
        *,
        writes: bool = True,
        deadline: float | None = None,
        after: Callable[[Any], Any] | None = None,
        notify: Callable[[Request], object] | None = None,
        post: Post | None = None,
    ) -> None:
        self.op = op
        self.args = args
        self.writes = writes
        self.deadline = deadline
        self.after = after
        self.notify = notify
        self.post = post
        self.cancelled = False
        self.done = False  # notified
        self.result: Any = None
        self.error: BaseException | None = None


def _complete(requests: list[Request]) -> None:
    for request in requests:
        if request.notify is not None:
            request.notify(request)


@final
class SqliteStore:
    """The connection thread of one channel.

    Args:
        path: the database file.
        queue_name: the channel's queue name.
        owner: the channel's id (written into its claims).
        synchronous: the ``PRAGMA synchronous`` value.
        busy_timeout: seconds SQLite waits for another connection's lock before a
            try counts as failed.
        label: how logs name the store.
    """

    def __init__(
        self,
        path: str,
        *,
        queue_name: str,
        owner: str,
        synchronous: str,
        busy_timeout: float,
        label: str,
    ) -> None:
        self._path = path
        self._queue_name = queue_name
        self._owner = owner
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._label = label
        self._worker: _Worker | None = None
        self._lock = threading.Lock()
        self.outage_since: float | None = None
        self.last_error: str | None = None

    # -- on the event loop ---------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """Whether no connection thread runs (none yet, or `stop` was called)."""
        return self._worker is None

    def submit(self, request: Request) -> None:
        """Hand *request* to the connection thread, started if none runs."""
        worker = self._worker
        if worker is None:
            with self._lock:
                worker = self._worker
                if worker is None:
                    worker = self._worker = _Worker()
                    worker.thread = threading.Thread(
                        target=self._main,
                        args=(worker,),
                        name=f"workpool sqlite {self._label}",
                        daemon=True,
                    )
                    worker.thread.start()
        worker.requests.put(request)

    async def call(
        self,
        op: Callable[..., Any] | None,
        *args: Any,
        writes: bool = True,
        deadline: float | None = None,
    ) -> Any:
        """Run ``op(batch, *args)`` in the next batch and return its result.

        Raises:
            ChannelUnavailableError: the store stayed unavailable past *deadline*.
            Exception: what the operation raised.
        """
        event = anyio.Event()
        request = Request(
            op,
            args,
            writes=writes,
            deadline=deadline,
            notify=lambda _: event.set(),
            post=loop_poster(),
        )
        self.submit(request)
        try:
            await event.wait()
        except BaseException:
            request.cancelled = True
            raise
        error = request.error
        if error is not None:
            request.error = None
            try:
                raise error
            finally:
                del error
        return request.result

    async def stop(self) -> None:
        """Finish everything submitted so far, then end the connection thread.

        Idempotent; a later request starts a new thread. Cancelled (shutdown's
        bound), it tells the thread to give up retrying.
        """
        worker = self._worker
        if worker is None:
            return
        event = anyio.Event()
        marker = worker.marker = Request(
            None, writes=False, notify=lambda _: event.set(), post=loop_poster()
        )
        worker.requests.put(marker)
        self._worker = None  # what comes after goes to a new thread
        try:
            await event.wait()
        finally:
            worker.abort.set()

    # -- on the connection thread ---------------------------------------------------------

    def _main(self, worker: _Worker) -> None:
        try:
            while True:
                batch = [worker.requests.get()]
                worker.take_more(batch)
                try:
                    self._run(worker, batch)
                except Exception as exc:  # a bug: fail the batch, keep the thread
                    logger.exception("the SQLite store %s failed a batch", self._label)
                    for request in batch:
                        request.error = exc
                    self._notify(batch)
                    worker.rollback()
                if worker.abort.is_set() or (worker.marker is not None and worker.marker in batch):
                    rest: list[Request] = []
                    worker.take_more(rest)
                    for request in rest:
                        request.error = ChannelUnavailableError(
                            f"the channel's store {self._label} was closed"
                        )
                    self._notify(rest)
                    return
        finally:
            worker.close()

    def _run(self, worker: _Worker, batch: list[Request]) -> None:
        """Run a batch: the writes in one transaction, then the reads (outside it);
        through an outage, retry what is not done yet."""
        backoff = _BACKOFF_FIRST
        while True:
            batch = self._live(batch)
            if not batch:
                return
            try:
                writers = [request for request in batch if request.writes]
                if writers:
                    self._execute(worker, writers, transaction=True)
                    batch = [request for request in batch if not request.writes]
                    self._recovered()
                    self._notify(writers)
                if batch:
                    self._execute(worker, batch, transaction=False)
            except Exception as exc:
                if not _is_store_error(exc):
                    raise
                worker.rollback()
                self._outage(exc)
                if worker.abort.wait(backoff):
                    for request in batch:
                        request.error = ChannelUnavailableError(
                            f"the SQLite store {self._label} was closed while unavailable: "
                            f"{self.last_error}"
                        )
                    self._notify(batch)
                    return
                backoff = min(backoff * 2, _BACKOFF_MAX)
                worker.take_more(batch)  # what arrived meanwhile is tried with it
                continue
            self._recovered()
            self._notify(batch)
            return

    def _live(self, batch: list[Request]) -> list[Request]:
        """The requests still to run; those cancelled or past their deadline are
        told so at once."""
        now = time.monotonic()
        live: list[Request] = []
        ended: list[Request] = []
        for request in batch:
            if request.cancelled:
                request.error = _SKIPPED
                ended.append(request)
            elif request.deadline is not None and now > request.deadline:
                request.error = ChannelUnavailableError(
                    f"the SQLite store {self._label} stayed unavailable: {self.last_error}"
                )
                ended.append(request)
            else:
                live.append(request)
        if ended:
            self._notify(ended)
        return live

    def _execute(self, worker: _Worker, requests: list[Request], *, transaction: bool) -> None:
        conn = worker.conn
        if conn is None:
            conn = worker.conn = self._connect()
        if transaction:
            conn.execute("BEGIN IMMEDIATE")
        batch = Batch(conn, self._queue_name, self._owner)
        for request in requests:
            op = request.op
            if op is None:
                continue
            try:
                request.result = op(batch, *request.args)
                request.error = None
            except Exception as exc:
                if _is_store_error(exc):
                    raise
                request.error = exc
        if transaction:
            conn.execute("COMMIT")
        for request in requests:
            after = request.after
            if after is not None and request.error is None:
                try:
                    request.result = after(request.result)
                except Exception as exc:
                    request.error = exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _outage(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            logger.warning(
                "SQLite store %s is unavailable (%s); retrying until it is back",
                self._label,
                self.last_error,
            )

    def _recovered(self) -> None:
        since = self.outage_since
        if since is not None:
            self.outage_since = None
            logger.info(
                "SQLite store %s is available again after %.1f s",
                self._label,
                time.monotonic() - since,
            )

    def _notify(self, batch: Iterable[Request]) -> None:
        by_loop: dict[Post, list[Request]] = {}
        for request in batch:
            if request.done:
                continue
            request.done = True
            post = request.post
            if post is not None:
                by_loop.setdefault(post, []).append(request)
        for post, requests in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                post(partial(_complete, requests))


@final
class _Worker:
    """One connection thread's own state: its queue, its connection, its abort flag."""

    __slots__ = ("abort", "conn", "marker", "requests", "thread")

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self.abort = threading.Event()
        self.conn: sqlite3.Connection | None = None
        self.thread: threading.Thread | None = None
        self.marker: Request | None = None  # `SqliteStore.stop`'s: the last request

    def take_more(self, batch: list[Request]) -> None:
        """Add what is queued already to *batch*, up to the batch size."""
        get = self.requests.get_nowait
        while len(batch) < _MAX_BATCH:
            try:
                batch.append(get())
            except queue.Empty:
                return

    def rollback(self) -> None:
        """End a failed transaction; a connection in doubt is closed (made again on
        the next try)."""
        conn = self.conn
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self.conn = None
            conn.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
