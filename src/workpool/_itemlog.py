"""The log records of an item's failed attempts: each retry, and the final failure.

Both carry the ids of the item's last attempt (``work_name``, ``attempt``,
``item_id``, ``scope_id``, ``session_id``), as the records logged while the attempt
ran do: they are logged after its scope is closed, where `LogContextFilter` has no
scope to read them from, so it keeps these. Off the success path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._log import logger

if TYPE_CHECKING:
    from ._item import WorkItem
    from ._session import ItemSession

__all__ = ["log_failed", "log_retry"]


def attempt_ids(item: WorkItem, slot: ItemSession) -> dict[str, Any]:
    """The ``extra=`` of a record about the item's last attempt.

    The item's session is made if nothing had read it yet: the record names the
    session the item holds across its attempts (and the next attempt sees).
    """
    session = slot.session
    if session is None:
        try:
            session = slot.materialize()
        except Exception:  # a broken session manager: logged where it failed
            session = None
    return {
        "work_name": item.name,
        "attempt": item.attempts,
        "item_id": item.id,
        "scope_id": slot.failed_scope_id,
        "session_id": session.id if session is not None else None,
    }


def log_retry(item: WorkItem, slot: ItemSession, delay: float, error: BaseException) -> None:
    """One WARNING per retry: which attempt failed, with what, and when the next runs."""
    logger.warning(
        "%s attempt %d failed: %s: %s; attempt %d in %.3g s",
        item.name,
        item.attempts,
        type(error).__name__,
        error,
        item.attempts + 1,
        delay,
        extra=attempt_ids(item, slot),
    )


def log_failed(item: WorkItem, slot: ItemSession, failure: BaseException) -> None:
    """The ERROR record of an item that failed for good, with its traceback."""
    logger.error(
        "%s failed for good after %d attempt%s: %s: %s",
        item.name,
        item.attempts,
        "" if item.attempts == 1 else "s",
        type(failure).__name__,
        failure,
        exc_info=failure,
        extra=attempt_ids(item, slot),
    )
