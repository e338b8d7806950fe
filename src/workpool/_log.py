"""Logging: one logger for the library, and a filter that tags records with item ids."""

from __future__ import annotations

import logging
import traceback

from ._context import current_scope

__all__ = ["LogContextFilter", "logger"]

logger = logging.getLogger("workpool")


class LogContextFilter(logging.Filter):
    """Add ``scope_id``, ``session_id``, ``work_name`` and ``attempt`` to records.

    Records logged while a work item runs get the ids of its scope; other records
    get ``None`` for each. Attach it to your handlers (or loggers) to see which
    background item your own log lines came from::

        handler.addFilter(workpool.LogContextFilter())
        logging.Formatter("%(levelname)s [%(work_name)s %(scope_id)s] %(message)s")
    """

    def filter(self, record: logging.LogRecord) -> bool:
        scope = current_scope()
        if scope is None:
            if not hasattr(record, "scope_id"):
                record.scope_id = None
                record.session_id = None
                record.work_name = None
                record.attempt = None
        else:
            record.scope_id = scope.id
            record.session_id = scope.session_id
            record.work_name = scope.item.name
            record.attempt = scope.attempt
        return True


class _DetachExceptionFilter(logging.Filter):
    """Format ``exc_info`` into ``exc_text`` and drop the exception itself.

    A record holding ``exc_info`` keeps the exception, its traceback and every frame
    in it alive for as long as any handler keeps the record (log capture in tests,
    memory handlers, queues). workpool promises that a failed item's exception is
    freed once the dead-letter hook returns, so its own records carry the formatted
    traceback only. Standard formatters print ``exc_text`` as they would have
    printed ``exc_info``. An exception passed as a message argument is replaced by
    its text for the same reason.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(record.exc_info[1])).rstrip(
                    "\n"
                )
            record.exc_info = None
        args = record.args
        if type(args) is tuple and any(isinstance(arg, BaseException) for arg in args):
            record.args = tuple(
                _text(arg) if isinstance(arg, BaseException) else arg for arg in args
            )
        return True


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() failed>"


logger.addFilter(LogContextFilter())
logger.addFilter(_DetachExceptionFilter())
