"""WorkItem, its states, and validation of what may be enqueued."""

from __future__ import annotations

import enum
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

from ._checks import check_timeout
from ._retry import RetryPolicy
from ._session import Session
from ._signature import KNOWN_CODES, work_kind
from ._uuid import new_uuid4

if TYPE_CHECKING:
    from uuid import UUID

    from ._scope import Scope
    from ._stop import StopToken

__all__ = ["ItemState", "Work", "WorkItem", "item_with_options", "new_uuid4"]

#: A work delegate: ``async def work(scope, stopping)`` or a sync one (run in a thread).
Work: TypeAlias = Callable[["Scope", "StopToken"], Awaitable[None] | None]


class ItemState(enum.Enum):
    """Where a `WorkItem` is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DROPPED = "dropped"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"

    @property
    def finished(self) -> bool:
        """True for the final states (everything but ``QUEUED`` and ``RUNNING``)."""
        return self is not _QUEUED and self is not _RUNNING


# An enum member costs about 60 ns to look up on its class (Python 3.11); the hot
# paths use these instead.
_QUEUED: Final = ItemState.QUEUED
_RUNNING: Final = ItemState.RUNNING


# Bound once: a name imported from a module is called through LOAD_ATTR (Python
# 3.11 takes it for a module), which would make a bound method per item.
_known_code: Final = KNOWN_CODES.get
_monotonic: Final = time.monotonic


def retry_of(work: Callable[..., Any]) -> RetryPolicy | None:
    """The policy ``@retry_policy`` attached to *work*, looking through partials."""
    func: Any = work
    while True:
        policy = getattr(func, "__workpool_retry__", None)
        if policy is not None or not isinstance(func, partial):
            return policy
        func = func.func


def check_work(work: object) -> None:
    """Raise `TypeError` at once for what cannot be run as a work delegate."""
    if callable(work):
        return
    if work is None:
        raise TypeError(
            "enqueue() got None instead of a work function; pass a callable taking "
            "(scope, stopping), e.g. enqueue(send_receipt) or "
            "enqueue(functools.partial(send_receipt, order_id))"
        )
    if inspect.iscoroutine(work):
        name = getattr(work, "__qualname__", "the function")
        work.close()  # it will never run: don't let it warn "never awaited"
        raise TypeError(
            f"enqueue() got a coroutine object ({name}(...)) instead of a work function; "
            f"pass the function itself, enqueue({name}), or bind its arguments with "
            f"functools.partial({name}, ...) or a lambda"
        )
    raise TypeError(
        f"enqueue() needs a callable taking (scope, stopping), got {type(work).__name__!r}"
    )


def work_name(work: Callable[..., Any]) -> str:
    """A readable name for a work function: its qualified name, through partials."""
    func: Any = work
    while isinstance(func, partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if name is None:
        name = type(func).__qualname__
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module and module != "__main__" else str(name)


_INF: Final = math.inf


def _checked_retry(retry: object) -> RetryPolicy:
    if type(retry) is not RetryPolicy and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
    return retry


def _checked_timeout(timeout: object) -> float:
    if type(timeout) is float and 0.0 < timeout < _INF:  # the usual case, checked fast
        return timeout
    checked = check_timeout(timeout)  # type: ignore[arg-type]
    assert checked is not None
    return checked


def _checked_name(name: object) -> str:
    if type(name) is not str and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
    return name


@final
class _Delivery:
    """A `WorkItem`'s record of its delivery, for channels that keep one."""

    __slots__ = ("deliveries", "key", "not_before", "parent_session_id", "receipt", "rejection")

    def __init__(self) -> None:
        self.deliveries = 1
        self.receipt: object = None
        self.rejection: tuple[str, Exception] | None = None
        self.key: str | None = None
        self.not_before = 0.0
        self.parent_session_id: UUID | None = None


@final
class WorkItem:
    """One queued unit of background work.

    Attributes:
        work: the delegate, called as ``work(scope, stopping)``.
        parent_session: the session the item should join, if any.
        retry: the policy given to ``enqueue(retry=...)``, if any.
        timeout: the per-attempt timeout given to ``enqueue(timeout=...)``, if any.
        enqueued_at: ``time.monotonic()`` when the channel accepted the item.
        state: an `ItemState`.
        is_async: whether the work runs on the event loop (else in a worker thread).
        attempts: how many attempts have started (on a durable channel, also those
            made before a reschedule).
        deliveries: how many times a channel handed the item to a consumer (1-based;
            always 1 in memory).
        receipt: the channel's private handle on a claimed item (``None`` in memory).
        rejection: ``(reason, exception)`` when a durable channel found at claim that
            the item must not run (``"unknown_task"``, ``"bad_payload"``,
            ``"delivery_limit"``); ``None`` otherwise.
        key: the ``key=`` given at enqueue, if any.
        not_before: ``time.monotonic()`` before which the item must not start
            (``delay=``); 0.0 without a delay.
    """

    __slots__ = (
        "_delivery",
        "_id",
        "_name",
        "attempts",
        "enqueued_at",
        "is_async",
        "parent_session",
        "retry",
        "state",
        "timeout",
        "work",
    )

    def __init__(
        self,
        work: Work,
        parent_session: Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        # A plain function seen before is known by its code (one lookup); anything
        # else is checked (`TypeError` for what cannot be called) and then classified.
        known = _known_code(getattr(work, "__code__", None))  # type: ignore[arg-type]
        if known is None:
            check_work(work)
        if parent_session is not None and not isinstance(parent_session, Session):
            raise TypeError(
                f"parent_session must be a workpool.Session or None, got {parent_session!r}"
            )
        self.work = work
        self.parent_session = parent_session
        self.retry = _checked_retry(retry) if retry is not None else None
        self.timeout = _checked_timeout(timeout) if timeout is not None else None
        self._name = _checked_name(name) if name is not None else None
        self._id: UUID | None = None
        self.is_async = known if known is not None else work_kind(work)
        self.enqueued_at = _monotonic()
        self.state = _QUEUED
        self.attempts = 0
        # What channels record about a delivery, made only by those that do: one
        # store here instead of six keeps the in-memory item small and quick.
        self._delivery: _Delivery | None = None

    @classmethod
    def restore(
        cls,
        work: Work,
        *,
        id: UUID,
        name: str,
        timeout: float | None,
        deliveries: int,
        attempts: int,
        receipt: object,
        parent_session_id: UUID | None = None,
        key: str | None = None,
        enqueued_at: float | None = None,
    ) -> WorkItem:
        """An item a durable channel rebuilt from its store, for a consumer.

        Args:
            work: the delegate (a ``TaskCall``).
            id: the message's id.
            name: the task's name.
            timeout: the per-attempt timeout (the message's, else the task's).
            deliveries: how many times the item was claimed, this time included.
            attempts: attempts made before this delivery.
            receipt: the channel's handle on the claim.
            parent_session_id: the id of the session the producer passed, if any.
            key: the item's ``key=``, if any.
            enqueued_at: ``time.monotonic()`` reading for the acceptance (default:
                now), for the queue wait time.
        """
        item = cls(work, None, timeout=timeout, name=name)
        item._id = id
        item.attempts = attempts
        delivery = item._delivery = _Delivery()
        delivery.deliveries = deliveries
        delivery.receipt = receipt
        delivery.parent_session_id = parent_session_id
        delivery.key = key
        if enqueued_at is not None:
            item.enqueued_at = enqueued_at
        return item

    def _recorded(self) -> _Delivery:
        delivery = self._delivery
        if delivery is None:
            delivery = self._delivery = _Delivery()
        return delivery

    @property
    def deliveries(self) -> int:
        """How many times a channel handed the item to a consumer (1 in memory)."""
        delivery = self._delivery
        return 1 if delivery is None else delivery.deliveries

    @deliveries.setter
    def deliveries(self, value: int) -> None:
        self._recorded().deliveries = value

    @property
    def receipt(self) -> object:
        """The channel's private handle on a claimed item (``None`` in memory)."""
        delivery = self._delivery
        return None if delivery is None else delivery.receipt

    @receipt.setter
    def receipt(self, value: object) -> None:
        self._recorded().receipt = value

    @property
    def rejection(self) -> tuple[str, Exception] | None:
        """``(reason, exception)`` when a durable channel found at claim that the
        item must not run; ``None`` otherwise."""
        delivery = self._delivery
        return None if delivery is None else delivery.rejection

    @rejection.setter
    def rejection(self, value: tuple[str, Exception] | None) -> None:
        self._recorded().rejection = value

    @property
    def key(self) -> str | None:
        """The ``key=`` given at enqueue, if any."""
        delivery = self._delivery
        return None if delivery is None else delivery.key

    @key.setter
    def key(self, value: str | None) -> None:
        self._recorded().key = value

    @property
    def not_before(self) -> float:
        """``time.monotonic()`` before which the item must not start; 0.0 without
        a ``delay=``."""
        delivery = self._delivery
        return 0.0 if delivery is None else delivery.not_before

    @not_before.setter
    def not_before(self, value: float) -> None:
        self._recorded().not_before = value

    @property
    def id(self) -> UUID:
        """A random UUID, made the first time it is read."""
        if self._id is None:
            self._id = new_uuid4()
        return self._id

    @property
    def name(self) -> str:
        """The name given to ``enqueue(name=...)``, else the work function's name."""
        if self._name is None:
            self._name = work_name(self.work)
        return self._name

    @property
    def parent_session_id(self) -> UUID | None:
        """The id of the parent session: the one recorded by a durable channel, else
        ``parent_session.id``; ``None`` without a parent."""
        delivery = self._delivery
        if delivery is not None and delivery.parent_session_id is not None:
            return delivery.parent_session_id
        parent = self.parent_session
        return parent.id if parent is not None else None

    def __repr__(self) -> str:
        return f"<WorkItem {self.name} {self.state.name}>"


def item_with_options(
    work: Work,
    parent_session: Session | None,
    retry: RetryPolicy | None,
    timeout: float | None,
    name: str | None,
) -> WorkItem:
    """``WorkItem(work, parent_session, retry=..., timeout=..., name=...)``, as a
    channel makes it for ``enqueue(..., retry=..., timeout=..., name=...)``.

    Positional all the way: keyword arguments to a class cost a dict per call
    (Python 3.11), which made an item with options several percent dearer than a
    bare one.
    """
    item = WorkItem(work, parent_session)
    # The usual types are checked inline; anything else goes through the checks.
    if retry is not None:
        item.retry = retry if type(retry) is RetryPolicy else _checked_retry(retry)
    if timeout is not None:
        item.timeout = (
            timeout
            if type(timeout) is float and 0.0 < timeout < _INF
            else _checked_timeout(timeout)
        )
    if name is not None:
        item._name = name if type(name) is str else _checked_name(name)
    return item
