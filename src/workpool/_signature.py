"""Whether a work function can be called as ``work(scope, stopping)``, checked once
per function, and whether it is async.

`work_kind` is the slow path of `WorkItem`'s ``is_async``: it refuses at
``enqueue`` what would only fail when run (``lambda: None``, ``async def f()``, a
``partial`` binding too many arguments), and remembers its verdict so that the
next item of the same function costs a dict lookup:

- a plain function by its code object (closures made per request share theirs):
  `KNOWN_CODES`, which `WorkItem` reads first;
- a bound method by its function's code, a ``partial`` by what it wraps and how
  many arguments it binds, a class by itself, any other callable object by its
  type (``__call__`` is looked up on the type).

Plain functions and methods are judged from their code, as the interpreter will
bind the call; other callables by `inspect.signature`; a callable without an
inspectable signature (some builtins, extension types) is accepted. An object
that declares ``__workpool_async__`` (a ``TaskCall``, a ``Task``) is trusted.
Each cache is bounded: emptied when full, it refills with what is in use.
"""

from __future__ import annotations

import inspect
from functools import partial
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from types import CodeType

__all__ = ["KNOWN_CODES", "work_kind"]

#: Entries a cache holds before it is emptied (the code objects of a program's
#: work functions are far fewer; only code made at run time could fill it).
MAX_ENTRIES: Final = 4096

#: Plain work functions checked so far: their code -> whether they are async.
KNOWN_CODES: dict[CodeType, bool] = {}
_known_methods: dict[CodeType, bool] = {}
_known_others: dict[Hashable, bool] = {}

_CO_VARARGS: Final = inspect.CO_VARARGS


def work_kind(work: Callable[..., Any]) -> bool:
    """Whether *work* is async, once it is known to take ``(scope, stopping)``.

    Raises:
        TypeError: *work* cannot be called with these two arguments (the message
            names it and says why).
    """
    kind = type(work)
    if kind is FunctionType:
        code = work.__code__
        known = KNOWN_CODES.get(code)
        if known is None:
            _check_code(work, work, 0)  # type: ignore[arg-type]
            known = _remember(KNOWN_CODES, code, inspect.iscoroutinefunction(work))
        return known
    if kind is MethodType:
        func = work.__func__  # type: ignore[attr-defined]
        if type(func) is FunctionType:
            code = func.__code__
            known = _known_methods.get(code)
            if known is None:
                _check_code(work, func, 1)
                known = _remember(_known_methods, code, inspect.iscoroutinefunction(work))
            return known
        key = _key(work)
    elif kind is partial:  # the usual way to bind arguments: no call to _key
        func = work.func  # type: ignore[attr-defined]
        if type(func) is FunctionType:
            keywords = work.keywords  # type: ignore[attr-defined]
            key = (func.__code__, len(work.args), tuple(keywords) if keywords else ())  # type: ignore[attr-defined]
        else:
            key = _key(work)
    else:
        declared = getattr(work, "__workpool_async__", None)
        if declared is not None:  # a TaskCall: its task function's kind
            return bool(declared)
        key = _key(work)
    if key is not None:
        known = _known_others.get(key)
        if known is not None:
            return known
    _check_signature(work)
    known = _is_async(work)
    if key is not None:
        _remember(_known_others, key, known)
    return known


def _remember(cache: dict[Any, bool], key: Hashable, is_async: bool) -> bool:
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[key] = is_async
    return is_async


def _key(work: Callable[..., Any]) -> Hashable | None:
    """What decides whether *work* takes ``(scope, stopping)``; None: not cached."""
    kind = type(work)
    if kind is partial:
        func = work.func  # type: ignore[attr-defined]
        inner = func.__code__ if type(func) is FunctionType else _key(func)
        if inner is None:
            return None
        keywords = work.keywords  # type: ignore[attr-defined]
        return (inner, len(work.args), tuple(keywords) if keywords else ())  # type: ignore[attr-defined]
    if kind is FunctionType:
        return work.__code__
    if kind is MethodType:
        func = work.__func__  # type: ignore[attr-defined]
        return (MethodType, func.__code__) if type(func) is FunctionType else None
    if isinstance(work, type):
        return (type, work)  # calling the class, not one of its instances
    if "__signature__" in getattr(work, "__dict__", ()):
        return None  # this object's own signature: nothing shared with its type
    # An instance called through its class's Python __call__: the same for all.
    call = getattr(kind, "__call__", None)  # noqa: B004
    return kind if type(call) is FunctionType else None  # type: ignore[return-value]


def _check_code(work: Callable[..., Any], func: FunctionType, bound: int) -> None:
    """Refuse a function (or a method, *bound* = 1) whose code cannot take two more
    positional arguments and nothing else, as the interpreter would bind them."""
    code = func.__code__
    given = 2 + bound
    positional = code.co_argcount
    if given > positional and not code.co_flags & _CO_VARARGS:
        takes = positional - bound
        _refuse(work, f"it takes {takes} positional argument{'' if takes == 1 else 's'}")
    required = positional - len(func.__defaults__ or ())
    if given < required:
        missing = ", ".join(code.co_varnames[given:required])
        _refuse(work, f"it also needs {missing}")
    keyword_only = code.co_varnames[positional : positional + code.co_kwonlyargcount]
    defaults = func.__kwdefaults__ or {}
    missing = ", ".join(name for name in keyword_only if name not in defaults)
    if missing:
        _refuse(work, f"it also needs the keyword-only {missing}")


def _check_signature(work: Callable[..., Any]) -> None:
    try:
        signature = inspect.signature(work, follow_wrapped=False)
    except (TypeError, ValueError):
        return  # no signature to check (a builtin, an extension type): run it
    try:
        signature.bind(None, None)
    except TypeError as exc:
        _refuse(work, f"for {signature}, {exc}")


def _refuse(work: Callable[..., Any], why: str) -> None:
    name = _describe(work)
    raise TypeError(
        f"enqueue() needs a work function called as work(scope, stopping), and {name} "
        f"cannot be: {why}. Take (scope, stopping) in the function, or bind its other "
        f"arguments with functools.partial or a lambda, e.g. "
        f"enqueue(lambda scope, stopping: send(order))"
    )


def _describe(work: Callable[..., Any]) -> str:
    func: Any = work
    while isinstance(func, partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"functools.partial({name}, ...)" if func is not work else str(name)


def _is_async(work: Callable[..., Any]) -> bool:
    """Whether calling *work* makes a coroutine to await on the loop (else it runs
    in a worker thread): through partials, by the function, its declared kind, or
    an async ``__call__``."""
    func: Any = work
    while isinstance(func, partial):
        func = func.func
    declared = getattr(func, "__workpool_async__", None)
    if declared is not None:
        return bool(declared)
    if inspect.iscoroutinefunction(func):
        return True
    if isinstance(func, type):
        return False
    call = getattr(func, "__call__", None)  # noqa: B004 - instances with async __call__
    return call is not None and inspect.iscoroutinefunction(call)
