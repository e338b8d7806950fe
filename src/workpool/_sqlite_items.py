"""The SQLite channel's arguments, and the `WorkItem` a claimed message becomes."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from ._checks import check_count, check_seconds
from ._full import FullMode
from ._item import WorkItem
from ._task import RejectedMessage, TaskCall, decode_call

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._scope import Scope
    from ._sqlite_sql import Claimed
    from ._stop import StopToken

__all__ = ["ChannelOptions", "check_delay", "check_key", "restore_item"]

SYNCHRONOUS: Final = ("off", "normal", "full", "extra")


class ChannelOptions:
    """`SqliteChannel`'s constructor arguments, checked (``ValueError``/``TypeError``)."""

    __slots__ = (
        "capacity",
        "full_mode",
        "lease",
        "max_deliveries",
        "max_message_bytes",
        "outage_timeout",
        "path",
        "queue",
        "synchronous",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        queue: str,
        capacity: int | None,
        full_mode: FullMode | str,
        lease: float,
        max_deliveries: int,
        synchronous: str,
        outage_timeout: float,
        max_message_bytes: int,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {path!r}")
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("path must name a database file, got ''")
        if self.path != ":memory:" and not self.path.startswith("file:"):
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise ValueError(
                    f"the directory of the SQLite file {self.path!r} does not exist; create "
                    "it first"
                )
        if not isinstance(queue, str) or not queue.strip():
            raise ValueError(f"queue must be a non-empty str, got {queue!r}")
        self.queue = queue
        self.capacity = None if capacity is None else check_count(capacity, "capacity")
        try:
            mode = FullMode(full_mode)
        except ValueError:
            mode = None
        if mode is not FullMode.WAIT and mode is not FullMode.REJECT:
            raise ValueError(
                f"a durable channel's full_mode is 'wait' or 'reject', got {full_mode!r}: it "
                "never drops an item it has accepted"
            )
        self.full_mode = mode
        self.lease = check_seconds(lease, "lease")
        self.max_deliveries = check_count(max_deliveries, "max_deliveries")
        if not isinstance(synchronous, str) or synchronous.lower() not in SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}"
            )
        self.synchronous = synchronous.lower()
        self.outage_timeout = check_seconds(outage_timeout, "outage_timeout")
        self.max_message_bytes = check_count(max_message_bytes, "max_message_bytes")


def check_delay(delay: float | None) -> float:
    """``delay=`` as seconds (0.0 without one)."""
    if delay is None:
        return 0.0
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"delay must be a number of seconds or None, got {delay!r}")
    if not (delay >= 0 and math.isfinite(delay)):
        raise ValueError(f"delay must be zero or more seconds, got {delay!r}")
    return float(delay)


def check_key(key: str | None) -> str | None:
    """``key=``: ``None`` or a non-empty str."""
    if key is not None and (not isinstance(key, str) or not key):
        raise TypeError(f"key must be a non-empty str or None, got {key!r}")
    return key


async def _never_runs(scope: Scope, stopping: StopToken) -> None:
    """The work of a message rejected at claim: the pool dead-letters it unrun."""
    raise AssertionError("a rejected message must not run")  # pragma: no cover


def restore_item(row: Claimed, tasks: Mapping[str, Any], max_deliveries: int) -> WorkItem:
    """The `WorkItem` for a claimed message, decoded, or rejected with a reason.

    ``item.attempts`` counts the attempts before this delivery: those recorded at a
    reschedule, plus one for each delivery since that ended without an outcome (its
    process died). The receipt is the claim's delivery number.
    """
    rejection: tuple[str, Exception] | None = None
    work: Any = _never_runs
    timeout = row.timeout
    deliveries = row.deliveries
    attempts = row.attempts + row.strikes - 1
    if row.strikes > max_deliveries:
        deliveries -= 1  # this claim does not run it
        attempts -= 1
        rejection = (
            "delivery_limit",
            RejectedMessage(
                "delivery_limit",
                f"{row.name} was delivered {row.strikes - 1} times without an outcome "
                f"(max_deliveries={max_deliveries}): its process died or was killed each "
                "time it ran",
            ),
        )
    else:
        try:
            call: TaskCall = decode_call(tasks, row.name, row.payload)
        except RejectedMessage as exc:
            rejection = (exc.reason, exc)
        else:
            work = call
            if timeout is None:
                timeout = call.task.timeout
    age = max(0.0, time.time() - row.enqueued_at)
    item = WorkItem.restore(
        work,
        id=UUID(row.id),
        name=row.name,
        timeout=timeout,
        deliveries=deliveries,
        attempts=attempts,
        receipt=row.deliveries,
        parent_session_id=None if row.parent_session_id is None else UUID(row.parent_session_id),
        key=row.key,
        enqueued_at=time.monotonic() - age,
    )
    if rejection is not None:
        item.rejection = rejection
    return item
