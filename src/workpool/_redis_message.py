"""Messages of the Redis channel: stored fields to `WorkItem` and `DeadLetter`, the
receipt of a claim, and the outage tracker shared by producers and consumers."""

from __future__ import annotations

import datetime
import math
import random
import time
from typing import TYPE_CHECKING, Any, Final, final
from uuid import NAMESPACE_URL, UUID, uuid5

from ._item import WorkItem
from ._log import logger
from ._payload import DeadLetter, RejectedMessage, format_error, plain_arguments
from ._task import decode_call

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from ._scope import Scope
    from ._stop import StopToken
    from ._task import Task

__all__ = [
    "DeliveryLimitError",
    "Held",
    "Outage",
    "backoff",
    "dead_letter_from",
    "item_from",
    "letter_fields",
    "message_fields",
]


class DeliveryLimitError(RuntimeError):
    """A message was claimed more than ``max_deliveries`` times without an outcome."""


@final
class Held:
    """A claim's receipt (`WorkItem.receipt`): the stream entry and its fields.

    Attributes:
        entry: the stream entry id.
        fields: the stored fields (bytes to bytes).
        lost: set when a lease renewal found another consumer owns the entry.
        settled: set when a consumer settled it here (its write may be under way;
            renewals leave it alone from then on).
    """

    __slots__ = ("entry", "fields", "lost", "settled")

    def __init__(self, entry: bytes, fields: Mapping[bytes, bytes]) -> None:
        self.entry = entry
        self.fields = fields
        self.lost = False
        self.settled = False

    def __repr__(self) -> str:
        return f"<Held {self.entry.decode()}{' lost' if self.lost else ''}>"


def _unrunnable(scope: Scope, stopping: StopToken) -> None:  # pragma: no cover
    raise RuntimeError("a rejected message never runs")


def item_from(
    entry: bytes,
    fields: Mapping[bytes, bytes],
    delivered: int,
    tasks: Mapping[str, Task[...]],
    max_deliveries: int,
) -> WorkItem:
    """The `WorkItem` for a claimed entry (*delivered*: the stream's delivery count).

    A message whose task is unknown, whose payload does not decode, whose stored
    fields are malformed (written by something else), or which was delivered more
    than *max_deliveries* times gets a ``rejection``: it never runs.
    """
    try:
        return _item_from(entry, fields, delivered, tasks, max_deliveries)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        item = WorkItem.restore(
            _unrunnable,
            id=_entry_uuid(entry),
            name=fields.get(b"name", b"?").decode("utf-8", "replace"),
            timeout=None,
            deliveries=delivered,
            attempts=0,
            receipt=Held(entry, fields),
        )
        problem = RejectedMessage(
            "bad_payload", f"stream entry {entry.decode()} is not a workpool message: {exc}"
        )
        item.rejection = ("bad_payload", problem)
        return item


def _entry_uuid(entry: bytes) -> UUID:
    """A stable id for an entry whose own id cannot be read."""
    return uuid5(NAMESPACE_URL, "workpool-redis-entry:" + entry.decode())


def _item_from(
    entry: bytes,
    fields: Mapping[bytes, bytes],
    delivered: int,
    tasks: Mapping[str, Task[...]],
    max_deliveries: int,
) -> WorkItem:
    get = fields.get
    message_id = UUID(hex=get(b"id", b"").decode())
    name = get(b"name", b"").decode("utf-8", "replace")
    deliveries = int(get(b"dlv") or 0) + delivered
    # Deliveries that ended cleanly (released, rescheduled) do not count to the limit.
    unsettled = deliveries - int(get(b"ok") or 0)
    rejection: tuple[str, Exception] | None = None
    timeout: float | None = None
    work: Any = _unrunnable
    try:
        call = decode_call(tasks, name, get(b"args", b""))
    except RejectedMessage as exc:
        rejection = (exc.reason, exc)
    else:
        work = call
        timeout = call.task.timeout
    raw_timeout = get(b"to")
    if raw_timeout:
        timeout = float(raw_timeout)
    if rejection is None and unsettled > max_deliveries:
        rejection = (
            "delivery_limit",
            DeliveryLimitError(
                f"{name} was claimed {unsettled} times without an outcome "
                f"(max_deliveries={max_deliveries}): its process died or lost it each time"
            ),
        )
    parent = get(b"par")
    at = get(b"at")
    now = time.monotonic()
    enqueued_at = now - max(0.0, time.time() - int(at) / 1000) if at else now
    item = WorkItem.restore(
        work,
        id=message_id,
        name=name,
        timeout=timeout,
        deliveries=deliveries,
        attempts=int(get(b"att") or 0),
        receipt=Held(entry, fields),
        parent_session_id=UUID(hex=parent.decode()) if parent else None,
        key=(get(b"key") or b"").decode() or None,
        enqueued_at=enqueued_at,
    )
    item.rejection = rejection
    return item


_CARRIED: Final = (b"id", b"name", b"args", b"to", b"key", b"par")


def message_fields(fields: Mapping[bytes, bytes], attempts: int, deliveries: int) -> list[bytes]:
    """A claimed message's fields to store it again after a clean hand-back (release,
    reschedule): *deliveries* kept, and all of them settled (``at`` is set by the script)."""
    out: list[bytes] = []
    for name in _CARRIED:
        out += (name, fields.get(name, b""))
    counted = str(deliveries).encode()
    out += (b"att", str(attempts).encode(), b"dlv", counted, b"ok", counted)
    return out


def letter_fields(
    item: WorkItem, fields: Mapping[bytes, bytes], reason: str, error: BaseException | None
) -> list[bytes | str]:
    """The dead-letter stream fields of *item* (``failed`` is set by the script)."""
    text, trace = format_error(error) if error is not None else (reason, None)
    out: list[bytes | str] = ["id", item.id.hex]
    for name in _CARRIED[1:]:
        out += (name, fields.get(name, b""))
    out += ("reason", reason, "error", text, "tb", trace or "")
    out += ("att", str(item.attempts), "dlv", str(item.deliveries))
    return out


def dead_letter_from(entry: bytes, fields: Mapping[bytes, bytes]) -> DeadLetter:
    """A dead-letter stream entry as a `DeadLetter`."""
    get = fields.get
    args, kwargs = plain_arguments(get(b"args", b"{}"))
    failed = int(get(b"failed") or 0)
    trace = get(b"tb")
    return DeadLetter(
        id=UUID(hex=get(b"id", b"").decode()),
        name=get(b"name", b"").decode("utf-8", "replace"),
        args=args,
        kwargs=kwargs,
        reason=get(b"reason", b"").decode(),
        error=get(b"error", b"").decode("utf-8", "replace"),
        traceback=trace.decode("utf-8", "replace") if trace else None,
        attempts=int(get(b"att") or 0),
        deliveries=int(get(b"dlv") or 0),
        failed_at=datetime.datetime.fromtimestamp(failed / 1000, datetime.UTC),
    )


def backoff(first: float = 0.05, cap: float = 2.0) -> Iterator[float]:
    """Capped exponential waits with full jitter: ``first``, doubling, up to ``cap``."""
    wait = first
    while True:
        yield random.uniform(wait / 2, wait)
        wait = min(cap, wait * 2)


@final
class Outage:
    """Logs an outage once when it starts (WARNING) and once when it ends (INFO).

    Args:
        where: what cannot reach Redis, for the log lines (the masked URL, the queue).
    """

    __slots__ = ("_since", "where")

    def __init__(self, where: str) -> None:
        self.where = where
        self._since: float | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, doing: str) -> None:
        if self._since is None:
            self._since = time.monotonic()
            logger.warning(
                "Redis unreachable (%s) while %s: %s: %s; retrying with backoff",
                self.where,
                doing,
                type(exc).__name__,
                exc,
            )

    def recovered(self) -> None:
        since = self._since
        if since is not None:
            self._since = None
            logger.info(
                "Redis reachable again (%s) after %.1f s", self.where, time.monotonic() - since
            )


def milliseconds(seconds: float) -> int:
    """Whole milliseconds, rounded up (a delay is never shortened)."""
    return max(0, math.ceil(seconds * 1000))
