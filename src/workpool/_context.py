"""The running item's scope as a context variable, and running a coroutine in a context."""

from __future__ import annotations

from contextvars import Context, ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine, Generator

    from ._scope import Scope

__all__ = ["CURRENT_SCOPE", "current_scope", "run_in_context"]

T = TypeVar("T")

#: The running item's scope; the item runner sets it for each attempt.
CURRENT_SCOPE: ContextVar[Scope | None] = ContextVar("workpool_current_scope", default=None)


def current_scope() -> Scope | None:
    """Return the running work item's `Scope`, or ``None`` outside a work item.

    The analogue of the .NET ``ScopeHolder.CurrentScope``. It is set for the whole
    of each attempt, also inside the worker thread of a sync work function.
    """
    return CURRENT_SCOPE.get()


class run_in_context(Generic[T]):
    """Await *coro* with every step of it run inside *context*.

    This is what a new task does for context isolation, without the cost of a task:
    context variables the coroutine sets land in *context*, not in the awaiting
    task's own context. Works on asyncio and trio alike, since it only forwards
    what the coroutine yields to the event loop and what the loop sends back.
    """

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, T], context: Context) -> None:
        self._coro = coro
        self._context = context

    def __await__(self) -> Generator[Any, Any, T]:
        coro = self._coro
        run = self._context.run
        send_value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    if error is None:
                        yielded = run(coro.send, send_value)
                    else:
                        thrown, error = error, None
                        try:
                            yielded = run(coro.throw, thrown)
                        finally:
                            del thrown
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                try:
                    send_value = yield yielded
                except GeneratorExit:
                    run(coro.close)
                    raise
                except BaseException as exc:
                    error = exc
                finally:
                    del yielded
        finally:
            del coro, error, send_value, self._coro
