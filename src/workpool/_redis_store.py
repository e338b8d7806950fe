"""The Redis channel's store: one coredis client, its keys, scripts and commands.

coredis 6 clients are async context managers whose connections run in a task group:
the client lives in a detached task of its own (`start_detached`), started at first
use from whichever task comes first and stopped by `RedisStore.stop`, so that a
producer, the pool's consumers and its housekeeping can all share it. The client
has no retry policy (coredis would retry an ``XADD`` after a connection error and
append twice): the channel retries where it knows a step is idempotent.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio
import anyio.abc
import coredis
from coredis.connection import TCPConnection
from coredis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from coredis.exceptions import (
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    StreamConsumerGroupError,
    StreamDuplicateConsumerGroupError,
)
from coredis.retry import NoRetryPolicy

from . import _redis_scripts as lua
from ._detached import start_detached
from ._exceptions import PoolClosedError
from ._log import logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from coredis.commands.script import Script

    from ._detached import Detached

__all__ = ["GROUP", "RedisStore", "is_nogroup", "is_outage"]

#: The consumer group of a queue (one per queue).
GROUP: Final = "workpool"

#: Seconds a blocking read may wait; the client's stream timeout is well above it.
BLOCK_SECONDS: Final = 1.0
_STREAM_TIMEOUT: Final = 5.0
_CONNECT_TIMEOUT: Final = 2.0
_CALL_SECONDS: Final = _STREAM_TIMEOUT + _CONNECT_TIMEOUT
T = TypeVar("T")

#: How many dead letters a queue keeps (oldest first out; approximate, ``MAXLEN ~``).
DEAD_LETTER_LIMIT: Final = 100_000


async def shielded(request: Awaitable[T]) -> T:
    """Await a command shielded from cancellation, within a bound: a cancellation while
    coredis sets up a connection would leave that connection half made (its streams
    never closed), and a cancelled write leaves it unknown whether Redis applied it.
    (One scope for both: shielded, with a deadline of its own.)"""
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _CALL_SECONDS) as scope:
        return await request
    assert scope.cancelled_caught
    raise TimeoutError(f"no reply from Redis within {_CALL_SECONDS:g} s")


_CONNECTION_STREAMS: Final = (
    "_write_buffer_in",
    "_write_buffer_out",
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
)


class _Connection(TCPConnection):
    """coredis 6.9 closes a connection's memory streams only once it has connected: a
    connection that fails to connect (Redis down) or is cancelled while connecting
    leaves them for the garbage collector, which warns (``ResourceWarning``) once per
    attempt through an outage. Close them when the connection ends."""

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await super().run(task_status=task_status)
        finally:
            for name in _CONNECTION_STREAMS:
                stream = getattr(self, name, None)
                if stream is not None:
                    stream.close()


def is_outage(exc: BaseException) -> bool:
    """Whether *exc* says Redis could not be reached (then a retry may succeed)."""
    if isinstance(exc, (RedisConnectionError, ReadOnlyError, TimeoutError, OSError)):
        return True
    # The client's task group ended (its connection task died): also unreachable.
    return isinstance(exc, RuntimeError) and "Connection pool is not initialized" in str(exc)


def is_nogroup(exc: BaseException) -> bool:
    """Whether *exc* says the consumer group is gone (Redis lost its data)."""
    if isinstance(exc, StreamConsumerGroupError) and not isinstance(
        exc, StreamDuplicateConsumerGroupError
    ):
        return True
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


async def command(client: coredis.Redis[bytes], *args: Any) -> Any:
    """Send one command on *client*'s shared connection and return its raw RESP3 reply
    (bytes, ints, lists, maps; an error reply raised as coredis's exception for it).

    On the hot path (enqueue, claim, acknowledge) coredis's command layer (argument
    validation, retry policy, telemetry span, reply callbacks) costs more than the round
    trip: this sends the command the way that layer does in the end. The connection goes
    back to the pool before the reply comes (coredis multiplexes it, as it does for any
    non-blocking command)."""
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        request = connection.create_request(*args, decode=False)
    finally:
        pool.release(connection)
    return await request


def _client(url: str) -> coredis.Redis[bytes]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        url,
        decode_responses=False,
        retry_policy=NoRetryPolicy(),
        stream_timeout=_STREAM_TIMEOUT,
        connect_timeout=_CONNECT_TIMEOUT,
    )
    pool = client.connection_pool
    if pool.connection_class is TCPConnection:
        pool.connection_class = _Connection
    return client


@final
class RedisStore:
    """Keys, scripts and the client of one queue.

    Args:
        url: ``redis://`` or ``rediss://`` URL (password and db included).
        queue: the queue's name (the hash tag of its keys).
    """

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        prefix = f"workpool:{{{queue}}}:"
        self.prefix = prefix
        self.stream = prefix + "stream"
        self._stream_key = self.stream.encode()
        self.delayed = prefix + "delayed"
        self.body = prefix + "body"
        self.keys = prefix + "keys"
        self.dead = prefix + "dead"
        self.cursor = prefix + "cursor"
        self.lock = prefix + "sweeper"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.client = _client(url)
        # Blocking reads on a client of their own: cancelling one (at close) drops its
        # connection, which must carry no other command's reply.
        self.reader = _client(url)
        register = self.client.register_script
        self._add = register(lua.ADD)
        self._promote = register(lua.PROMOTE)
        self._ack = register(lua.ACK)
        self._dead = register(lua.DEAD)
        self._release = register(lua.RELEASE)
        self._reschedule = register(lua.RESCHEDULE)
        self._renew = register(lua.RENEW)
        self._reclaim = register(lua.RECLAIM)
        self._retire = register(lua.RETIRE)
        self._replay = register(lua.REPLAY)
        self._purge_all = register(lua.PURGE_ALL)
        self._scripts = (
            self._add,
            self._promote,
            self._ack,
            self._dead,
            self._release,
            self._reschedule,
            self._renew,
            self._reclaim,
            self._retire,
            self._replay,
            self._purge_all,
        )
        self._host: Detached | None = None
        self._stop: anyio.Event | None = None
        self._starting: anyio.Lock | None = None
        self._stopped = False

    # -- the client's task -------------------------------------------------------------

    async def ensure(self) -> None:
        """Start the client's task if it does not run (again, if it died)."""
        host = self._host
        if host is not None and not host.done:
            return
        if self._stopped:
            raise PoolClosedError("the Redis channel was closed (aclose): make a new one")
        if self._starting is None:
            self._starting = anyio.Lock()
        async with self._starting:
            host = self._host
            if host is not None and not host.done:
                return
            if host is not None:
                logger.warning("the Redis client's task had ended; starting it again")
            stop = self._stop = anyio.Event()
            self._host = await start_detached(
                lambda *, task_status: self._run_client(stop, task_status=task_status),
                name=f"workpool redis client {self.queue!r}",
            )
            await self._load_scripts()

    async def _load_scripts(self) -> None:
        """Load the scripts up front (else each first call logs coredis's NOSCRIPT retry);
        a Redis that cannot be reached now gets them on first use."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CALL_SECONDS):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for script in self._scripts:
                        pipe.script_load(script.script)
            except Exception as exc:
                if not is_outage(exc):
                    raise

    async def _run_client(self, stop: anyio.Event, *, task_status: Any) -> None:
        try:
            async with self.client, self.reader:
                task_status.started()
                await stop.wait()
        except Exception as exc:  # its connections' task group failed: restarted on use
            logger.warning("the Redis client's task ended: %s: %s", type(exc).__name__, exc)

    async def stop(self) -> None:
        """Stop the client's task (connections closed)."""
        host, stop = self._host, self._stop
        self._host = None
        self._stopped = True
        if host is None or stop is None:
            return
        stop.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await host.wait()

    # -- queue setup -------------------------------------------------------------------

    async def create_group(self) -> None:
        """Create the consumer group (and the stream) if missing, reading from the start:
        every entry in the stream is unfinished (acknowledged ones are deleted)."""
        try:
            await shielded(self.client.xgroup_create(self.stream, GROUP, "0", mkstream=True))
        except StreamDuplicateConsumerGroupError:
            pass
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- producers ---------------------------------------------------------------------

    async def add(
        self,
        messages: Sequence[Sequence[Any]],
        *,
        call: str,
        capacity: int,
        seen_ms: int,
        acks: Sequence[bytes] = (),
        freed: Sequence[bytes] = (),
        read: int = 0,
    ) -> tuple[list[tuple[int, bytes]], list[tuple[bytes, dict[bytes, bytes]]]]:
        """Run ``ADD`` for *messages* (each: id, name, args, att, dlv, to, key, par,
        delay_ms): ``(code, value)`` for each, in order (*call* names this call, the
        same for its retries: they add nothing twice); and, riding along, acknowledge
        *acks* (freeing *freed*: key, id pairs, flat) and read up to *read* new entries
        for this consumer, returned as ``(entry id, fields)`` pairs."""
        keys = [self.stream, self.delayed, self.body, self.keys, f"{self.prefix}seen:{call}"]
        args: list[Any] = [capacity, seen_ms, GROUP, self.consumer, read, len(acks), len(freed)]
        args += acks
        args += freed
        for message in messages:
            args += message
        reply: list[Any] = await shielded(self._script(self._add, keys, args))
        codes, got = reply
        results = [(int(codes[i]), codes[i + 1]) for i in range(0, len(codes), 2)]
        return results, [
            (entry, dict(zip(flat[::2], flat[1::2], strict=True))) for entry, flat in got
        ]

    async def promote(self, limit: int = 100) -> tuple[int, int]:
        """Move due delayed messages into the stream: (moved, ms until the next, or -1)."""
        reply: list[int] = await shielded(
            self._promote([self.stream, self.delayed, self.body], [limit])
        )
        return int(reply[0]), int(reply[1])

    async def unfinished(self) -> int:
        """Queued, delayed and running messages."""
        with anyio.CancelScope(shield=True), anyio.fail_after(_CALL_SECONDS):
            async with self.client.pipeline(transaction=False) as pipe:
                queued = pipe.xlen(self.stream)
                delayed = pipe.zcard(self.delayed)
            count = int(await queued) + int(await delayed)
        return count

    # -- consumers ---------------------------------------------------------------------

    async def read(self, count: int, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """``XREADGROUP`` of new entries for this consumer: ``(entry id, fields)`` pairs.

        On the reader's own connection, held until the reply (the read blocks it); a
        cancelled read drops that connection, so that no late reply can reach another
        command."""
        pool = self.reader.connection_pool
        async with pool.acquire() as connection:
            request = connection.create_request(
                b"XREADGROUP",
                b"GROUP",
                GROUP,
                self.consumer,
                b"COUNT",
                count,
                b"BLOCK",
                block_ms,
                b"STREAMS",
                self.stream,
                b">",
                decode=False,
                disconnect_on_cancellation=True,
            )
            reply: Any = await request
        if not reply:
            return []
        entries = reply.get(self._stream_key) if isinstance(reply, dict) else reply[0][1]
        out: list[tuple[bytes, dict[bytes, bytes]]] = []
        for entry, flat in entries or ():
            if flat is not None:
                out.append((entry, dict(zip(flat[::2], flat[1::2], strict=True))))
        return out

    async def ack(self, entries: Sequence[bytes], keys: Sequence[bytes]) -> None:
        """Acknowledge and delete *entries*; free *keys* (key, id pairs, flat)."""
        await shielded(
            self._script(
                self._ack, [self.stream, self.keys], [GROUP, len(entries), *entries, *keys]
            )
        )

    async def _script(self, script: Script[bytes], keys: list[Any], args: list[Any]) -> Any:
        """``EVALSHA`` on the shared connection (see `command`); a Redis that lost its
        scripts (restarted, ``SCRIPT FLUSH``) gets it loaded again by coredis."""
        try:
            return await command(self.client, b"EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys, args)

    async def bury(
        self, entry: bytes, message_id: bytes, key: bytes, letter: Sequence[Any]
    ) -> None:
        await shielded(
            self._dead(
                [self.stream, self.keys, self.dead],
                [GROUP, entry, message_id, key, DEAD_LETTER_LIMIT, *letter],
            )
        )

    async def release(self, entry: bytes, fields: Sequence[Any]) -> None:
        await shielded(self._release([self.stream], [GROUP, entry, *fields]))

    async def reschedule(
        self, entry: bytes, message_id: bytes, delay_ms: int, fields: Sequence[Any]
    ) -> None:
        await shielded(
            self._reschedule(
                [self.stream, self.delayed, self.body],
                [GROUP, entry, message_id, delay_ms, *fields],
            )
        )

    async def renew(self, entries: Sequence[bytes]) -> list[bytes]:
        """Renew the leases of *entries*; return those this consumer no longer owns."""
        lost: list[bytes] = await shielded(
            self._renew([self.stream], [GROUP, self.consumer, *entries])
        )
        return lost

    async def reclaim(self, count: int, min_idle_ms: int, lock_ms: int) -> list[Any] | None:
        """Claim entries idle over *min_idle_ms* (crashed consumers), if no other process
        sweeps: ``[[entry, fields (flat), delivery count]...]``, or None."""
        result: list[Any] | None = await shielded(
            self._reclaim(
                [self.stream, self.cursor, self.lock],
                [GROUP, self.consumer, min_idle_ms, count, 10, lock_ms],
            )
        )
        return result

    async def retire(self, keep: Sequence[bytes]) -> int:
        """Hand back what is still pending for this consumer but *keep* (entries still
        running here); remove the consumer once it owns nothing."""
        return int(await shielded(self._retire([self.stream], [GROUP, self.consumer, *keep])))

    # -- dead letters ------------------------------------------------------------------

    async def dead_entries(self, count: int, after: bytes | None = None) -> tuple[Any, ...]:
        start = b"-" if after is None else b"(" + after
        return tuple(await shielded(self.client.xrange(self.dead, start, b"+", count=count)))

    async def replay(self, entries: Sequence[bytes]) -> int:
        return int(await shielded(self._replay([self.stream, self.dead, self.keys], list(entries))))

    async def purge(self, entries: Sequence[bytes]) -> int:
        return int(await shielded(self.client.xdel(self.dead, list(entries))))

    async def purge_all(self) -> int:
        return int(await shielded(self._purge_all([self.dead], [])))
