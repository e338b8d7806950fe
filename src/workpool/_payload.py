"""JSON for task arguments, and what a refused or dead message carries.

The codec's rules live here: which values travel, dumping, the validator built from
a task's signature, how errors read; also `RejectedMessage`, `DeadLetter` and
`format_error`. Nothing here imports `_task` (which calls in and re-exports).

Values that travel (checked before dumping, so that nothing is converted silently):
``str``, ``int``, ``float`` (NaN and infinities as the JSON extensions ``NaN`` and
``Infinity``), ``bool``, ``None``, ``list``, ``tuple``, ``set`` and ``frozenset``
(as JSON arrays), ``dict`` with ``str``, ``int``, ``Enum`` or ``UUID`` keys,
``datetime``, ``date``, ``time``, ``timedelta``, ``UUID``, ``Decimal``, ``Enum``
members, dataclass instances and pydantic models. Anything else is refused:
``bytes`` (not text: pass ``str`` or base64), open files, iterators and generators
(pydantic would drain them into lists), functions, arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import reprlib
import sys
import traceback
import typing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, NamedTuple, final
from uuid import UUID

import pydantic
import typing_extensions
from pydantic_core import PydanticSerializationError, from_json, to_json

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "ArgumentsValidator",
    "DeadLetter",
    "ParameterNames",
    "RejectedMessage",
    "build_validator",
    "decode_arguments",
    "encode_arguments",
    "format_error",
    "plain_arguments",
    "short_repr",
]


#: Types whose values travel as they are; grows with leaf types met (models, subclasses).
_PLAIN: set[type] = {
    str,
    int,
    float,
    bool,
    type(None),
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    UUID,
    Decimal,
}
_MAX_DEPTH: Final = 200  # deeper (or circular) structures are refused
_ATOMS: Final = (
    str,
    int,
    float,
    datetime.date,  # datetime too
    datetime.time,
    datetime.timedelta,
    UUID,
    Decimal,
)
_LEAVES: Final = (*_ATOMS, pydantic.BaseModel)
_ARRAYS: Final = (list, tuple, set, frozenset)
_KEYS: Final = (str, int, enum.Enum, UUID)

_TRAVELS: Final = (
    "str, int, float, bool, None, list, tuple, set, dict, datetime, date, time, "
    "timedelta, UUID, Decimal, Enum, dataclasses and pydantic models"
)


_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
short_repr = _repr.repr


class ParameterNames(NamedTuple):
    """A task's own parameters, for messages: positional names and the ``*args`` name."""

    positional: tuple[str, ...]
    var_positional: str | None

    def where(self, index: int) -> str:
        """``args[1] (email)``: a positional argument by position and parameter name."""
        if index < len(self.positional):
            return f"args[{index}] ({self.positional[index]})"
        return f"args[{index}]" + (f" (*{self.var_positional})" if self.var_positional else "")


class RejectedMessage(Exception):
    """A stored message that must not run; the channel dead-letters it.

    Attributes:
        reason: ``"unknown_task"`` or ``"bad_payload"`` (the dead letter's reason).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def encode_arguments(
    name: str,
    names: ParameterNames,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    max_bytes: int,
) -> bytes:
    """``{"args": [...], "kwargs": {...}}`` as compact JSON (see `_task.encode_call`)."""
    plain = _PLAIN
    for value in args:
        if type(value) not in plain and _find(value) is not None:
            _raise_unencodable(name, names, args, kwargs)
    for value in kwargs.values():
        if type(value) not in plain and _find(value) is not None:
            _raise_unencodable(name, names, args, kwargs)
    try:
        # by_alias + round_trip: a model is dumped in the form it validates back from.
        data = to_json({"args": args, "kwargs": kwargs}, by_alias=True, round_trip=True)
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        for where, value in _items(names, args, kwargs):
            reason = _dump_error(value)
            if reason is not None:
                raise TypeError(f"task {name!r}: cannot encode {where}: {reason}") from None
        raise TypeError(f"task {name!r}: cannot encode its arguments: {exc}") from None
    if len(data) > max_bytes:
        raise ValueError(
            f"task {name!r}: its arguments encode to {len(data):,} bytes, over the "
            f"limit of {max_bytes:,} bytes (max_message_bytes); store large data elsewhere "
            "and pass a reference (an id, a path, a URL)"
        )
    return data


def _items(
    names: ParameterNames, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[tuple[str, object]]:
    for index, value in enumerate(args):
        yield f"argument {names.where(index)}", value
    for key, value in kwargs.items():
        yield f"argument {key!r}", value


def _raise_unencodable(
    name: str, names: ParameterNames, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    for where, value in _items(names, args, kwargs):
        bad = find_unencodable(value)
        if bad is not None:
            path, culprit = bad
            path = path.lstrip(". ")
            inside = f" (at {path if len(path) <= 80 else path[:77] + '...'})" if path else ""
            raise TypeError(
                f"task {name!r}: cannot encode {where}{inside}: a "
                f"{type(culprit).__qualname__} ({short_repr(culprit)}) is not JSON; "
                f"durable channels take {_TRAVELS}"
            )


def _dump_error(value: object) -> str | None:
    try:
        to_json(value, by_alias=True, round_trip=True)
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        return str(exc)
    return None


def decode_arguments(
    name: str,
    names: ParameterNames,
    validator: Callable[[], ArgumentsValidator],
    payload: bytes | str,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Parse and validate a payload (see `_task.decode_call`).

    Raises:
        RejectedMessage: ``"bad_payload"``.
    """
    try:
        data = from_json(payload)
    except ValueError as exc:
        raise RejectedMessage(
            "bad_payload", f"task {name!r}: the payload is not JSON ({exc}): {_snippet(payload)}"
        ) from None
    args = data.get("args") if type(data) is dict else None
    kwargs = data.get("kwargs") if type(data) is dict else None
    if type(args) is not list or type(kwargs) is not dict:
        raise RejectedMessage(
            "bad_payload",
            f'task {name!r}: the payload is not {{"args": [...], "kwargs": {{...}}}}: '
            + _snippet(payload),
        )
    result = validator().validate(args, kwargs)
    if type(result) is str:
        raise RejectedMessage(
            "bad_payload", f"task {name!r}: its arguments do not validate: {result}"
        )
    return result  # type: ignore[return-value]


def _snippet(payload: bytes | str, limit: int = 200) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return repr(text if len(text) <= limit else text[:limit] + "...")


def plain_arguments(payload: bytes | str) -> tuple[list[Any], dict[str, Any]]:
    """A payload's ``args`` and ``kwargs`` as plain JSON values, without validation.

    For dead letters, whose task may be unknown here: ``([], {})`` when the payload is
    not of the shape `encode_call` writes (the dead letter's ``error`` says why).
    """
    try:
        data = from_json(payload)
    except ValueError:
        return [], {}
    if type(data) is not dict:
        return [], {}
    args, kwargs = data.get("args"), data.get("kwargs")
    return (args if type(args) is list else [], kwargs if type(kwargs) is dict else {})


def find_unencodable(value: object) -> tuple[str, object] | None:
    """The first value inside *value* that does not travel, and its path; ``None`` if all do.

    The path reads like Python: ``[2]``, ``['key']``, ``.field``, `` key (1, 2)``.
    """
    bad = _find(value)
    if bad is None:
        return None
    segments, culprit = bad
    return "".join(reversed(segments)), culprit


def _find(value: object, depth: int = 0) -> tuple[list[str], object] | None:
    # Paths are built on the way back up, only for a value that does not travel.
    if type(value) in _PLAIN:
        return None
    if depth > _MAX_DEPTH:
        return ["..."], value
    depth += 1
    if isinstance(value, _ARRAYS):
        for i, item in enumerate(value):
            if type(item) not in _PLAIN and (bad := _find(item, depth)) is not None:
                bad[0].append(f"[{i}]")
                return bad
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _KEYS):
                return [f" key {key!r}"], key
            if type(item) not in _PLAIN and (bad := _find(item, depth)) is not None:
                bad[0].append(f"[{key!r}]")
                return bad
        return None
    if isinstance(value, enum.Enum):
        bad = _find(value.value, depth)
        if bad is not None:
            bad[0].append(".value")
        return bad
    if isinstance(value, _LEAVES):
        # A model is dumped by its own serializer, which refuses unknown types itself.
        # Remember the type: the set is bounded by the program's own classes.
        _PLAIN.add(type(value))
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if type(item) not in _PLAIN and (bad := _find(item, depth)) is not None:
                bad[0].append(f".{field.name}")
                return bad
        return None
    return [], value


@final
class ArgumentsValidator:
    """Validates a task's JSON arguments against its annotations, in pydantic's JSON mode.

    Built once per task by `build_validator`. The arguments are matched to the
    parameters as Python would (too many, missing, doubled or unknown arguments are
    errors), then validated as one JSON object by a pydantic ``TypedDict`` of the
    parameters, so that strict models and fields accept what they accept from JSON
    (a ``datetime`` string, a ``UUID`` string) and nothing is coerced that JSON input
    would not be.
    """

    __slots__ = ("_keyword", "_names", "_positional", "_validate_json", "_var_keyword")

    def __init__(
        self,
        adapter: pydantic.TypeAdapter[dict[str, Any]],
        names: ParameterNames,
        keyword: frozenset[str],
        var_keyword: str | None,
    ) -> None:
        self._validate_json = adapter.validator.validate_json  # skips a Python layer
        self._names = names
        self._positional = names.positional
        self._keyword = keyword  # parameters that may be given by keyword
        self._var_keyword = var_keyword

    def validate(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | str:
        """``(args, kwargs)`` converted, in the shape given; or what is wrong, as text."""
        positional = self._positional
        given = len(args)
        extra = given - len(positional)
        if extra > 0:
            var_positional = self._names.var_positional
            if var_positional is None:
                return f"{self._names.where(len(positional))}: Unexpected positional argument"
            named = dict(zip(positional, args))  # noqa: B905 - args may be fewer (defaults)
            named[var_positional] = args[len(positional) :]
        else:
            named = dict(zip(positional, args))  # noqa: B905 - args may be fewer (defaults)
        if kwargs:
            error = self._add_keywords(named, kwargs)
            if error is not None:
                return error
        try:
            valid: dict[str, Any] = self._validate_json(to_json(named))
        except pydantic.ValidationError as exc:
            return self._describe(exc, given)
        new_args = tuple([valid[key] for key in positional[:given]])
        if extra > 0:
            new_args += tuple(valid[self._names.var_positional])  # type: ignore[index]
        if not kwargs:
            return new_args, {}
        var_keyword, keyword = self._var_keyword, self._keyword
        if var_keyword is None:
            return new_args, {key: valid[key] for key in kwargs}
        rest = valid.get(var_keyword, {})
        return new_args, {key: valid[key] if key in keyword else rest[key] for key in kwargs}

    def _add_keywords(self, named: dict[str, Any], kwargs: dict[str, Any]) -> str | None:
        var_keyword, keyword = self._var_keyword, self._keyword
        for key, value in kwargs.items():
            if key in keyword:
                if key in named:
                    return f"{key}: Got multiple values for argument"
                named[key] = value
            elif var_keyword is not None:
                named.setdefault(var_keyword, {})[key] = value
            else:
                return f"{key}: Unexpected keyword argument"
        return None

    def _describe(self, error: pydantic.ValidationError, given: int) -> str:
        positional, var_positional = self._names
        lines = []
        for detail in error.errors(include_url=False, include_context=False):
            loc = list(detail.get("loc", ()))
            head = loc.pop(0) if loc else ""
            if head in positional and positional.index(str(head)) < given:
                where = self._names.where(positional.index(str(head)))
            elif head == var_positional and loc and isinstance(loc[0], int):
                where = self._names.where(len(positional) + typing.cast("int", loc.pop(0)))
            elif head == self._var_keyword and loc:
                where = str(loc.pop(0))
            else:
                where = str(head) or "arguments"
            where += "".join(f"[{part!r}]" for part in loc)
            if detail.get("type") == "missing":
                lines.append(f"{where}: Missing required argument")
            else:
                lines.append(f"{where}: {detail['msg']}, got {short_repr(detail.get('input'))}")
        return "; ".join(lines)


# The functional TypedDict form with a computed name and fields: opaque to type checkers.
# pydantic needs typing_extensions' TypedDict before Python 3.12 (it depends on it).
_make_typed_dict: Any = typing_extensions.TypedDict


def build_validator(func: Callable[..., Any], names: ParameterNames) -> ArgumentsValidator:
    """The `ArgumentsValidator` for *func*'s parameters after ``(scope, stopping)``.

    Only those parameters' annotations are evaluated, in the namespace of *func*'s
    module (``scope: Scope`` imported under ``TYPE_CHECKING`` is fine, so is an
    unresolvable return annotation); an unannotated parameter takes any JSON value.

    Raises:
        Exception: an annotation that cannot be resolved (``NameError``) or that
            pydantic cannot validate (``pydantic.PydanticSchemaGenerationError``).
    """
    parameters = list(inspect.signature(func).parameters.values())[2:]
    annotations = getattr(func, "__annotations__", None) or {}

    def own() -> None: ...

    # get_type_hints() on a stand-in holding only the task's own annotations.
    own.__annotations__ = {p.name: annotations[p.name] for p in parameters if p.name in annotations}
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    hints = typing.get_type_hints(own, globalns=vars(module) if module else {}, include_extras=True)
    fields: dict[str, Any] = {}
    keyword = set()
    var_keyword = None
    for p in parameters:
        hint = hints.get(p.name, Any)
        if p.kind is p.VAR_POSITIONAL:
            fields[p.name] = typing_extensions.NotRequired[list[hint]]  # type: ignore[valid-type]
        elif p.kind is p.VAR_KEYWORD:
            fields[p.name] = typing_extensions.NotRequired[dict[str, hint]]  # type: ignore[valid-type]
            var_keyword = p.name
        else:
            fields[p.name] = hint if p.default is p.empty else typing_extensions.NotRequired[hint]
            if p.kind is not p.POSITIONAL_ONLY:
                keyword.add(p.name)
    shape = _make_typed_dict(f"{getattr(func, '__qualname__', 'task')}.arguments", fields)
    shape.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
    adapter: pydantic.TypeAdapter[dict[str, Any]] = pydantic.TypeAdapter(shape)
    return ArgumentsValidator(adapter, names, frozenset(keyword), var_keyword)


@final
@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An item that failed for good, kept by a durable channel for inspection and replay.

    Attributes:
        id: the message's id (the `WorkItem`'s ``id``).
        name: the task's name.
        args: positional arguments, as plain JSON values (not validated).
        kwargs: keyword arguments, as plain JSON values.
        reason: ``"failed"``, ``"delivery_limit"``, ``"unknown_task"`` or ``"bad_payload"``.
        error: the last error, ``"ValueError: boom"``.
        traceback: its traceback text, or ``None``.
        attempts: attempts made.
        deliveries: times the message was claimed.
        failed_at: when it was dead-lettered (aware, UTC).
    """

    id: UUID
    name: str
    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any]
    reason: str
    error: str
    traceback: str | None
    attempts: int
    deliveries: int
    failed_at: datetime.datetime


_TRACEBACK_HEAD = 4_000
_TRACEBACK_TAIL = 28_000


def format_error(exc: BaseException) -> tuple[str, str | None]:
    """*exc* as text, keeping no reference to it: ``("ValueError: boom", traceback)``.

    The traceback is ``None`` when the exception was never raised; a very long one
    keeps its head and its tail (where the error is).
    """
    error = "".join(traceback.format_exception_only(exc)).strip()
    if exc.__traceback__ is None:
        return error, None
    text = "".join(traceback.format_exception(exc))
    if len(text) > _TRACEBACK_HEAD + _TRACEBACK_TAIL:
        cut = len(text) - _TRACEBACK_HEAD - _TRACEBACK_TAIL
        text = (
            f"{text[:_TRACEBACK_HEAD]}\n... {cut:,} characters cut ...\n{text[-_TRACEBACK_TAIL:]}"
        )
    return error, text
