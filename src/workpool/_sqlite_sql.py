"""The SQLite channel's schema and statements, and the operations run in a batch.

Every operation is a function ``op(batch, *args)`` run on the store's connection
thread inside the transaction of one batch (`_sqlite_store`): one commit for all the
enqueues, claims and acknowledgements that arrived meanwhile.

A message row is *queued* while ``claimed_by`` is NULL (due at ``available_at``, the
``not_before`` of a ``delay=``), and *claimed* while it holds a lease: then
``claimed_by`` is the claiming channel's id and ``available_at`` the end of the
lease, so that a message whose lease expired (its process died) is simply due again.
Claims take the messages due first (``available_at``, then the order of arrival),
FIFO among due items. An acknowledgement, release or renewal only applies to the
claim it was made for (``claimed_by`` and ``deliveries`` match): once a lease
expired and another consumer claimed the message, the late one changes nothing.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "SCHEMA",
    "Batch",
    "Claimed",
    "Settlement",
    "check_sqlite_version",
]

MIN_SQLITE: Final = (3, 35, 0)  # UPDATE ... RETURNING

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS workpool_messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    key TEXT,
    timeout REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    strikes INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    available_at REAL NOT NULL,
    claimed_by TEXT,
    parent_session_id TEXT,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workpool_messages_due
    ON workpool_messages (queue, available_at, seq);
CREATE UNIQUE INDEX IF NOT EXISTS workpool_messages_key
    ON workpool_messages (queue, key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS workpool_dead (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    key TEXT,
    timeout REAL,
    parent_session_id TEXT,
    enqueued_at REAL NOT NULL,
    reason TEXT NOT NULL,
    error TEXT NOT NULL,
    traceback TEXT,
    attempts INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workpool_dead_queue ON workpool_dead (queue, seq);
"""

_INSERT: Final = (
    "INSERT INTO workpool_messages (id, queue, name, payload, key, timeout, due_at, "
    "available_at, parent_session_id, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BY_KEY: Final = "SELECT id FROM workpool_messages WHERE queue = ? AND key = ?"
_BY_ID: Final = "SELECT 1 FROM workpool_messages WHERE id = ?"
_COUNT: Final = "SELECT count(*) FROM workpool_messages WHERE queue = ?"
_COUNT_QUEUED: Final = (
    "SELECT count(*) FROM workpool_messages WHERE queue = ? AND claimed_by IS NULL"
)
_NEXT_DUE: Final = "SELECT min(available_at) FROM workpool_messages WHERE queue = ?"
_CLAIM: Final = (
    "UPDATE workpool_messages SET available_at = ?, claimed_by = ?, "
    "deliveries = deliveries + 1, strikes = strikes + 1 "
    "WHERE seq IN (SELECT seq FROM workpool_messages WHERE queue = ? AND available_at <= ? "
    "ORDER BY available_at, seq LIMIT ?) "
    "RETURNING seq, id, name, payload, key, timeout, attempts, deliveries, strikes, "
    "parent_session_id, enqueued_at"
)
_MINE: Final = "id = ? AND claimed_by = ? AND deliveries = ?"
_ACK: Final = f"DELETE FROM workpool_messages WHERE {_MINE}"
_TO_DEAD: Final = (
    "INSERT OR REPLACE INTO workpool_dead (id, queue, name, payload, key, timeout, "
    "parent_session_id, enqueued_at, reason, error, traceback, attempts, deliveries, "
    "failed_at) SELECT id, queue, name, payload, key, timeout, parent_session_id, "
    f"enqueued_at, ?, ?, ?, ?, ?, ? FROM workpool_messages WHERE {_MINE}"
)
# A release is not a strike (it was handed back on purpose); one never started does
# not count as a delivery either.
_RELEASE: Final = (
    "UPDATE workpool_messages SET available_at = due_at, claimed_by = NULL, "
    f"strikes = max(strikes - 1, 0) WHERE {_MINE}"
)
_UNCLAIM: Final = (
    "UPDATE workpool_messages SET available_at = due_at, claimed_by = NULL, "
    f"strikes = max(strikes - 1, 0), deliveries = deliveries - 1 WHERE {_MINE}"
)
_RESCHEDULE: Final = (
    "UPDATE workpool_messages SET available_at = ?, due_at = ?, claimed_by = NULL, "
    f"attempts = ?, strikes = 0 WHERE {_MINE}"
)
_RENEW: Final = f"UPDATE workpool_messages SET available_at = ? WHERE {_MINE}"
_DEAD_COLUMNS: Final = (
    "id, name, payload, reason, error, traceback, attempts, deliveries, failed_at"
)


def check_sqlite_version() -> None:
    """`RuntimeError` when the SQLite library is older than the channel needs."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(
            f"SqliteChannel needs SQLite 3.35 or later (UPDATE ... RETURNING); this "
            f"Python's sqlite3 module uses SQLite {sqlite3.sqlite_version}. Use a newer "
            "Python build, or install pysqlite3-binary and make it the sqlite3 module"
        )


@dataclass
class Batch:
    """What the operations of one transaction share.

    Attributes:
        conn: the store's connection (a transaction is open).
        queue: the channel's queue name.
        owner: the channel's id, written into the messages it claims.
        now: wall-clock time when the batch started (``time.time()``).
        unfinished: unfinished messages in the queue, counted once per batch
            when a capacity needs it and kept up to date by the batch's writes.
    """

    conn: sqlite3.Connection
    queue: str
    owner: str
    now: float = field(default_factory=time.time)
    unfinished: int | None = None

    def count(self) -> int:
        """Unfinished messages in the queue, this batch's writes included."""
        if self.unfinished is None:
            self.unfinished = int(self.conn.execute(_COUNT, (self.queue,)).fetchone()[0])
        return self.unfinished

    def _finished(self, changed: int) -> None:
        if self.unfinished is not None:
            self.unfinished -= changed


# -- producers ------------------------------------------------------------------------


def enqueue(
    batch: Batch,
    message_id: str,
    name: str,
    payload: str,
    key: str | None,
    timeout: float | None,
    delay: float,
    parent_session_id: str | None,
    capacity: int | None,
) -> tuple[str, str | None]:
    """Store one message: ``("added", None)``, ``("exists", id)`` for a key already in
    the queue unfinished, or ``("full", None)``."""
    conn = batch.conn
    if key is not None:
        row = conn.execute(_BY_KEY, (batch.queue, key)).fetchone()
        if row is not None:
            return "exists", row[0]
    if capacity is not None:
        if batch.count() >= capacity:
            return "full", None
        batch.unfinished = batch.count() + 1
    now = batch.now
    due = now + delay
    conn.execute(
        _INSERT,
        (message_id, batch.queue, name, payload, key, timeout, due, due, parent_session_id, now),
    )
    return "added", None


# -- consumers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """One message as a claim returned it."""

    seq: int
    id: str
    name: str
    payload: str
    key: str | None
    timeout: float | None
    attempts: int
    deliveries: int
    strikes: int
    parent_session_id: str | None
    enqueued_at: float


def claim(batch: Batch, count: int, lease: float) -> list[Claimed]:
    """Claim up to *count* due messages with a lease of *lease* seconds, FIFO."""
    now = batch.now
    rows = batch.conn.execute(
        _CLAIM, (now + lease, batch.owner, batch.queue, now, count)
    ).fetchall()
    rows.sort()  # RETURNING gives no order: by arrival
    return [Claimed(*row) for row in rows]


def next_due(batch: Batch) -> float | None:
    """When the queue's next message is due or its earliest lease ends (wall clock);
    ``None`` when the queue is empty. Read only."""
    value = batch.conn.execute(_NEXT_DUE, (batch.queue,)).fetchone()[0]
    return None if value is None else float(value)


def counts(batch: Batch) -> tuple[int, int]:
    """``(queued, unfinished)`` messages of the queue. Read only."""
    conn, queue = batch.conn, batch.queue
    queued = int(conn.execute(_COUNT_QUEUED, (queue,)).fetchone()[0])
    unfinished = int(conn.execute(_COUNT, (queue,)).fetchone()[0])
    return queued, unfinished


@dataclass(frozen=True, slots=True)
class Settlement:
    """One outcome to write: what `SqliteChannel.settle` queues for the store.

    ``kind`` is ``"done"``, ``"dead"``, ``"released"``, ``"unclaim"`` (claimed, never
    handed to a consumer) or ``"rescheduled"``.
    """

    kind: str
    id: str
    deliveries: int
    attempts: int = 0
    delay: float = 0.0
    reason: str | None = None
    error: str | None = None
    traceback: str | None = None
    reported: int = 0  # the dead letter's deliveries


def settle(batch: Batch, settlements: Sequence[Settlement]) -> list[Settlement]:
    """Write outcomes; return those that no longer matched their claim (lease lost)."""
    conn, owner, now = batch.conn, batch.owner, batch.now
    lost = []
    for s in settlements:
        mine = (s.id, owner, s.deliveries)
        kind = s.kind
        if kind == "done":
            changed = conn.execute(_ACK, mine).rowcount
            batch._finished(changed)
        elif kind == "dead":
            conn.execute(
                _TO_DEAD,
                (s.reason, s.error or "", s.traceback, s.attempts, s.reported, now, *mine),
            )
            changed = conn.execute(_ACK, mine).rowcount
            batch._finished(changed)
        elif kind == "released":
            changed = conn.execute(_RELEASE, mine).rowcount
        elif kind == "unclaim":
            changed = conn.execute(_UNCLAIM, mine).rowcount
        else:  # rescheduled
            due = now + s.delay
            changed = conn.execute(_RESCHEDULE, (due, due, s.attempts, *mine)).rowcount
        if changed == 0:
            lost.append(s)
    return lost


def renew(batch: Batch, held: Sequence[tuple[str, int]], lease: float) -> list[str]:
    """Extend the leases of *held* ``(id, deliveries)``; return the ids whose claim is
    no longer this channel's (the lease expired and the message was claimed again,
    or it is gone)."""
    conn, owner = batch.conn, batch.owner
    until = batch.now + lease
    return [
        message_id
        for message_id, deliveries in held
        if conn.execute(_RENEW, (until, message_id, owner, deliveries)).rowcount == 0
    ]


# -- dead letters -----------------------------------------------------------------------


def _id_filter(ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    if ids is None:
        return "", []
    return f" AND id IN ({', '.join('?' * len(ids))})", list(ids)


def dead_letters(batch: Batch, limit: int) -> list[tuple[Any, ...]]:
    """The queue's dead letters, oldest first. Read only."""
    return batch.conn.execute(
        f"SELECT {_DEAD_COLUMNS} FROM workpool_dead WHERE queue = ? ORDER BY seq LIMIT ?",
        (batch.queue, limit),
    ).fetchall()


def replay(batch: Batch, ids: Sequence[str] | None) -> int:
    """Move dead letters back to the queue, counts reset; a key held meanwhile by an
    unfinished message is dropped from the replayed one. Return how many moved."""
    conn, queue, now = batch.conn, batch.queue, batch.now
    where, params = _id_filter(ids)
    rows = conn.execute(
        "SELECT id, name, payload, key, timeout, parent_session_id FROM workpool_dead "
        f"WHERE queue = ?{where} ORDER BY seq",
        (queue, *params),
    ).fetchall()
    moved = 0
    for message_id, name, payload, key, timeout, parent in rows:
        if conn.execute(_BY_ID, (message_id,)).fetchone() is not None:
            continue  # queued again already (never both, but never lose the live one)
        if key is not None and conn.execute(_BY_KEY, (queue, key)).fetchone() is not None:
            key = None
        conn.execute(
            _INSERT, (message_id, queue, name, payload, key, timeout, now, now, parent, now)
        )
        conn.execute("DELETE FROM workpool_dead WHERE id = ?", (message_id,))
        moved += 1
    if batch.unfinished is not None:
        batch.unfinished += moved
    return moved


def purge_dead(batch: Batch, ids: Sequence[str] | None) -> int:
    """Delete dead letters; return how many."""
    where, params = _id_filter(ids)
    return batch.conn.execute(
        f"DELETE FROM workpool_dead WHERE queue = ?{where}", (batch.queue, *params)
    ).rowcount
