"""Named tasks: `task`, `Task`, `TaskCall`, their JSON form, the registry, `DeadLetter`.

A durable channel stores a task's *name* and its arguments as JSON, never code:
`encode_call` at ``enqueue``, `decode_call` when a consumer claims the message
(validated against the function's annotations, so a ``datetime`` arrives as one).
A message that cannot run is refused with `RejectedMessage`, which the channel
turns into a dead letter. Nothing is pickled, nothing is ``eval``-ed.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    cast,
    final,
    overload,
)

from ._checks import check_timeout
from ._payload import (
    ArgumentsValidator,
    DeadLetter,
    ParameterNames,
    RejectedMessage,
    build_validator,
    decode_arguments,
    encode_arguments,
    format_error,
    plain_arguments,
    short_repr,
)
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._scope import Scope
    from ._stop import StopToken

__all__ = [
    "DeadLetter",
    "RejectedMessage",
    "Task",
    "TaskCall",
    "decode_call",
    "encode_call",
    "format_error",
    "plain_arguments",
    "resolve_tasks",
    "task",
    "tasks_from_env",
]

P = ParamSpec("P")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_REGISTER_HINT = (
    "register it with the worker: WorkerPool(..., tasks=[the_task or its module]) "
    "or WORKPOOL_TASKS=the.module"
)


@final
class Task(Generic[P]):
    """A function registered by name, to be enqueued with JSON-able arguments.

    Made by `task`. Calling a task calls the function; `bind` makes the `TaskCall`
    to enqueue.

    Attributes:
        name: the task's identity in a durable channel (default ``module.qualname``).
        func: the decorated function, ``(scope, stopping, *args, **kwargs)``.
        retry: its `RetryPolicy`, or ``None`` (the pool's default applies).
        timeout: its per-attempt timeout in seconds, or ``None``.
    """

    name: str
    func: Callable[Concatenate[Scope, StopToken, P], Any]
    retry: RetryPolicy | None
    timeout: float | None

    def __init__(
        self,
        func: Callable[Concatenate[Scope, StopToken, P], Any],
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        if isinstance(func, Task):
            raise TypeError(f"{func!r} is already a task; decorate the function once")
        if not callable(func):
            raise TypeError(f"@task needs a function, got {func!r}")
        qualname = getattr(func, "__qualname__", None)
        if name is None:
            module = getattr(func, "__module__", None)
            if not (module and qualname):
                raise TypeError(f"@task cannot name {func!r}; pass @task(name='...')")
            name = f"{module}.{qualname}"
        elif not isinstance(name, str) or not name.strip():
            raise TypeError(f"a task name must be a non-empty str, got {name!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        attached = getattr(func, "__workpool_retry__", None)
        if retry is not None and attached is not None and attached is not retry:
            raise TypeError(
                f"task {name!r} has a policy from @retry_policy and another from "
                "@task(retry=...); give it once"
            )
        self.name = name
        self.func = func
        self.retry = retry if retry is not None else attached
        self.timeout = check_timeout(timeout)
        self._signature = _task_signature(func, qualname or name)
        self._setup_arity()
        self._validator: ArgumentsValidator | None = None
        self._validator_error: str | None = None
        # Read by the pool like the attributes @retry_policy sets, also through a
        # functools.partial of the task (in-memory channel).
        self.__workpool_retry__ = self.retry
        self.__workpool_async__ = _is_async_callable(func)
        self.__doc__ = getattr(func, "__doc__", None)
        self.__name__ = getattr(func, "__name__", name)
        self.__qualname__ = qualname or name
        self.__module__ = getattr(func, "__module__", None) or __name__
        self.__wrapped__ = func

    def _setup_arity(self) -> None:
        own = list(self._signature.parameters.values())[2:]
        positional = tuple(p.name for p in own if p.kind in _POSITIONAL)
        var_positional = next((p.name for p in own if p.kind is p.VAR_POSITIONAL), None)
        self._names = ParameterNames(positional, var_positional)
        # bind() without keywords needs no Signature.bind when the count fits.
        self._min_args = sum(1 for p in own if p.kind in _POSITIONAL and p.default is p.empty)
        self._max_args = len(positional) if var_positional is None else 1 << 62
        if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in own):
            self._max_args = -1  # a required keyword: never the fast path

    def __call__(
        self, scope: Scope, stopping: StopToken, /, *args: P.args, **kwargs: P.kwargs
    ) -> Any:
        """Call the function itself (a coroutine for an async task)."""
        return self.func(scope, stopping, *args, **kwargs)

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> TaskCall:
        """The call to enqueue: this task with these arguments.

        Raises:
            TypeError: the arguments do not fit the function's signature.
        """
        if kwargs or not self._min_args <= len(args) <= self._max_args:
            try:
                self._signature.bind(None, None, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(
                    f"task {self.name!r}: {exc}; it takes {self._parameters_text()}"
                ) from None
        return TaskCall(self, args, kwargs)

    def _parameters_text(self) -> str:
        """The task's own parameters, after ``(scope, stopping)``, as source text."""
        own = [
            p.replace(annotation=_Source(p.annotation)) if isinstance(p.annotation, str) else p
            for p in list(self._signature.parameters.values())[2:]
        ]
        return str(
            self._signature.replace(parameters=own, return_annotation=inspect.Signature.empty)
        )

    def _arguments_validator(self) -> ArgumentsValidator:
        validator = self._validator
        if validator is None:
            if self._validator_error is not None:
                raise RejectedMessage("bad_payload", self._validator_error)
            try:
                validator = self._validator = build_validator(self.func, self._names)
            except Exception as exc:  # pydantic: an annotation it cannot validate from JSON
                self._validator_error = (
                    f"task {self.name!r} cannot validate its arguments from JSON "
                    f"({type(exc).__name__}: {exc}); annotate its parameters with types "
                    "pydantic knows, or leave them unannotated"
                )
                raise RejectedMessage("bad_payload", self._validator_error) from None
        return validator

    def __repr__(self) -> str:
        kind = "async" if self.__workpool_async__ else "sync"
        return f"<Task {self.name!r} ({kind})>"


@overload
def task(
    func: Callable[Concatenate[Scope, StopToken, P], Any],
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Task[P]: ...
@overload
def task(
    *, name: str | None = None, retry: RetryPolicy | None = None, timeout: float | None = None
) -> Callable[[Callable[Concatenate[Scope, StopToken, P], Any]], Task[P]]: ...
def task(
    func: Callable[Concatenate[Scope, StopToken, P], Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Task[P] | Callable[[Callable[Concatenate[Scope, StopToken, P], Any]], Task[P]]:
    """Make a function a named `Task`: ``@task`` or ``@task(name=..., retry=..., timeout=...)``.

    ::

        @task
        async def send_receipt(scope: Scope, stopping: StopToken, order_id: int) -> None: ...

        @task(name="billing.charge", retry=RetryPolicy.exponential(5), timeout=30)
        def charge(scope: Scope, stopping: StopToken, *, invoice: UUID) -> None: ...

        await pool.enqueue(send_receipt.bind(42))

    Args:
        func: an async or sync function taking ``(scope, stopping)`` first, then its
            own arguments.
        name: the task's identity in durable channels; default ``module.qualname``.
            Pin it so that renaming or moving the function does not orphan messages.
        retry: the task's `RetryPolicy` (a durable channel takes no ``retry=`` at
            enqueue: the policy lives with the task).
        timeout: per-attempt timeout in seconds, or ``None``.

    Raises:
        TypeError: *func* does not take ``(scope, stopping)`` first, *retry* is not a
            `RetryPolicy`, *name* is not a non-empty ``str``.
        ValueError: *timeout* is not a positive number of seconds.
    """
    if func is not None:
        return Task(func, name=name, retry=retry, timeout=timeout)
    check_timeout(timeout)  # fail at the decorator line, not at the def below it
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")

    def decorate(f: Callable[Concatenate[Scope, StopToken, P], Any]) -> Task[P]:
        return Task(f, name=name, retry=retry, timeout=timeout)

    return decorate


class _Source(str):
    """A string annotation shown as written (``int``, not ``'int'``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _task_signature(func: Callable[..., Any], label: str) -> inspect.Signature:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"@task cannot read the signature of {func!r}: {exc}") from None
    first = list(signature.parameters.values())[:2]
    if len(first) < 2 or any(p.kind not in _POSITIONAL for p in first):
        raise TypeError(
            f"@task: {label}{signature} must take (scope, stopping) first, then its own "
            f"arguments, e.g. async def {getattr(func, '__name__', 'work')}(scope, stopping, "
            "order_id: int)"
        )
    return signature


def _is_async_callable(func: object) -> bool:
    if inspect.iscoroutinefunction(func):  # looks through functools.partial too
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - instances with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


@final
class TaskCall:
    """A `Task` bound to its arguments: what ``enqueue`` takes; made by `Task.bind`.

    It is a work delegate ``(scope, stopping)``: the in-memory channel runs it with the
    argument objects as given; a durable channel stores them as JSON (`encode_call`).
    Treat it as immutable.

    Attributes:
        task: the `Task`.
        name: the task's name.
        args: positional arguments (after ``scope, stopping``).
        kwargs: keyword arguments.
    """

    __slots__ = ("__workpool_async__", "__workpool_retry__", "args", "kwargs", "name", "task")

    task: Task[...]
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    __workpool_retry__: RetryPolicy | None
    __workpool_async__: bool
    __hash__: ClassVar[None]  # type: ignore[assignment]

    def __init__(
        self, task: Task[...], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> None:
        self.task = task
        self.name = task.name
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        self.__workpool_retry__ = task.retry
        self.__workpool_async__ = task.__workpool_async__

    def __call__(self, scope: Scope, stopping: StopToken) -> Any:
        """Run the task function with the bound arguments (a coroutine for an async task)."""
        return self.task.func(scope, stopping, *self.args, **self.kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskCall):
            return NotImplemented
        return self.task is other.task and self.args == other.args and self.kwargs == other.kwargs

    def __repr__(self) -> str:
        parts = [short_repr(a) for a in self.args]
        parts += [f"{k}={short_repr(v)}" for k, v in self.kwargs.items()]
        return f"<TaskCall {self.name}({', '.join(parts)})>"


def check_durable_call(work: object, retry: object, name: str | None) -> TaskCall:
    """*work* as a durable channel's ``enqueue`` takes it: a `TaskCall`, with no
    ``retry=`` (the policy lives with the task) and no ``name=`` other than the task's.

    Raises:
        TypeError: saying which of the three is wrong and what to do instead.
    """
    if type(work) is not TaskCall:
        raise TypeError(
            f"a durable channel stores named task calls, got {work!r}: decorate the "
            "function with @task and enqueue task.bind(...)"
        )
    if retry is not None:
        raise TypeError(
            "enqueue(retry=...) is not supported on a durable channel: the retry policy "
            "lives with the task, in the worker's code: @task(retry=RetryPolicy...)"
        )
    if name is not None and name != work.name:
        raise TypeError(
            f"enqueue(name={name!r}) differs from the task's name {work.name!r}; on a "
            "durable channel the name says which task runs: use @task(name=...)"
        )
    return work


def encode_call(call: TaskCall, *, max_bytes: int) -> bytes:
    """The JSON payload of *call*: ``{"args": [...], "kwargs": {...}}``, compact, UTF-8.

    Raises:
        TypeError: an argument that does not travel as JSON (the message names it, by
            name for keywords, by position and parameter name for positional ones, and
            where inside it the bad value is), or *call* is not a `TaskCall`.
        ValueError: the payload is over *max_bytes* (the message says both sizes).
    """
    if type(call) is not TaskCall:
        raise TypeError(
            f"a durable channel stores TaskCall objects, got {call!r}; decorate the "
            "function with @task and enqueue task.bind(...)"
        )
    return encode_arguments(call.name, call.task._names, call.args, call.kwargs, max_bytes)


def decode_call(tasks: Mapping[str, Task[...]], name: str, payload: bytes | str) -> TaskCall:
    """The `TaskCall` a stored message stands for, its arguments validated and converted.

    Arguments are matched to the task function's own parameters as Python would, then
    validated against their annotations in pydantic's JSON mode: a ``datetime`` string
    arrives as a ``datetime``, an object as the annotated model or dataclass, also
    for strict models; unannotated parameters take the JSON value as it is. Defaults
    are left to the function. The validator is built on a task's first decode.

    Raises:
        RejectedMessage: reason ``"unknown_task"`` when *name* is not in *tasks*;
            ``"bad_payload"`` when *payload* is not JSON, not of the shape
            `encode_call` writes, or its arguments do not validate (missing, extra, or
            wrong values).
    """
    found = tasks.get(name)
    if found is None:
        known = ", ".join(sorted(tasks)[:10]) or "none"
        raise RejectedMessage(
            "unknown_task",
            f"no task named {name!r} is registered in this worker (registered: {known}); "
            + _REGISTER_HINT,
        )
    args, kwargs = decode_arguments(name, found._names, found._arguments_validator, payload)
    return TaskCall(found, args, kwargs)


def resolve_tasks(
    tasks: Iterable[Task[...] | ModuleType | str] | Task[...] | ModuleType | str,
) -> dict[str, Task[...]]:
    """The registry a worker runs from: task name -> `Task`.

    Args:
        tasks: `Task` objects, modules (every `Task` attribute is taken), or dotted
            module names (imported; ``"pkg.mod.task_name"`` names one task).

    Raises:
        TypeError: an entry that is none of these (a plain function: decorate it).
        ValueError: two different tasks with one name, or a module without tasks.
        ImportError: a module name that cannot be imported.
    """
    entries: Iterable[object]
    if isinstance(tasks, (Task, ModuleType, str)):
        entries = (tasks,)
    else:
        entries = cast("Iterable[object]", tasks)  # a module looks iterable to mypy
    registry: dict[str, Task[...]] = {}
    for entry in entries:
        for found in _tasks_of(entry):
            other = registry.setdefault(found.name, found)
            if other is not found and other.func is not found.func:
                raise ValueError(
                    f"two different tasks are named {found.name!r} ({other.func!r} and "
                    f"{found.func!r}); give them distinct names with @task(name=...)"
                )
    return registry


def _tasks_of(entry: object) -> list[Task[...]]:
    if isinstance(entry, Task):
        return [entry]
    if isinstance(entry, str):
        entry = _import(entry)
        if isinstance(entry, Task):
            return [entry]
    if isinstance(entry, ModuleType):
        found = [value for value in vars(entry).values() if isinstance(value, Task)]
        if not found:
            raise ValueError(
                f"module {entry.__name__!r} has no tasks; decorate its functions with @task"
            )
        return found
    if isinstance(entry, TaskCall):
        raise TypeError(f"tasks= takes tasks, not calls: pass {entry.name} instead of {entry!r}")
    if callable(entry):
        raise TypeError(
            f"tasks= takes Task objects, modules or module names; decorate {entry!r} with @task"
        )
    raise TypeError(f"tasks= takes Task objects, modules or module names, got {entry!r}")


def _import(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        module, _, attribute = name.rpartition(".")
        if exc.name == name and module:
            found = getattr(importlib.import_module(module), attribute, None)
            if isinstance(found, Task):
                return found
        exc.add_note(f"workpool: {name!r} was given as a task module (tasks= or WORKPOOL_TASKS)")
        raise


def tasks_from_env(value: str) -> list[str]:
    """Module names from ``WORKPOOL_TASKS``: ``"myapp.jobs, myapp.billing"``.

    Commas and whitespace separate; empty entries are ignored.

    Raises:
        ValueError: an entry that is not a dotted Python name.
    """
    names = [part for part in value.replace(",", " ").split() if part]
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"WORKPOOL_TASKS: {name!r} is not a dotted module name")
    return names
