"""Named tasks: the decorator, bind, TaskCall, the JSON codec, the registry, dead letters."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import sys
import textwrap
import types
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, cast

import anyio
import pydantic
import pytest

import workpool._payload
from workpool import (
    DeadLetter,
    RetryPolicy,
    Scope,
    StopToken,
    Task,
    TaskCall,
    WorkerPool,
    retry_policy,
    task,
)
from workpool._item import retry_of
from workpool._task import (
    RejectedMessage,
    decode_call,
    encode_call,
    format_error,
    plain_arguments,
    resolve_tasks,
    tasks_from_env,
)

if TYPE_CHECKING:
    from pathlib import Path

LIMIT = 1_048_576
SCOPE = cast("Scope", object())  # the task functions below never touch their scope


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Address:
    street: str
    number: int


class Weird(enum.Enum):
    OPAQUE = object()


class Customer(pydantic.BaseModel):
    name: str
    since: datetime.datetime
    vip_level: int = pydantic.Field(default=0, alias="vipLevel")


@task
async def send_receipt(scope: Scope, stopping: StopToken, order_id: int, email: str) -> str:
    """An async task with two plain arguments."""
    return f"{order_id}:{email}"


@task(name="billing.charge", retry=RetryPolicy.exponential(5), timeout=30)
def charge(scope: Scope, stopping: StopToken, *, invoice: uuid.UUID, amount: Decimal) -> str:
    """A sync task with keyword-only arguments, a pinned name, a policy and a timeout."""
    return f"{invoice}:{amount}"


@task
def rich(
    scope: Scope,
    stopping: StopToken,
    when: datetime.datetime,
    ident: uuid.UUID,
    customer: Customer,
    *,
    day: datetime.date | None = None,
    at: datetime.time | None = None,
    lasting: datetime.timedelta | None = None,
    color: Color = Color.RED,
    address: Address | None = None,
    pair: tuple[int, str] = (0, ""),
    tags: set[str] | None = None,
    by_id: dict[int, str] | None = None,
    customers: list[Customer] | None = None,
    price: Decimal = Decimal(0),
) -> None:
    """A task with every kind of argument that travels."""


@task
def loose(scope: Scope, stopping: StopToken, /, anything, *rest, flag=False, **extra):  # type: ignore[no-untyped-def]
    """Unannotated parameters, *args and **kwargs."""
    return anything, rest, flag, extra


@task
def with_defaults(
    scope: Scope, stopping: StopToken, a: int, b: int = 2, *, c: list[int] | None = None
) -> None:
    """Optional arguments."""


class Opaque:
    """A type pydantic cannot validate from JSON."""


class StrictCustomer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)
    since: datetime.datetime
    ref: uuid.UUID
    color: Color
    pair: tuple[int, int]


@task
def strict(
    scope: Scope,
    stopping: StopToken,
    customer: StrictCustomer,
    ident: Annotated[uuid.UUID, pydantic.Strict()],
) -> None:
    """Strict models and fields take what they take from JSON."""


@task
def variadic(scope: Scope, stopping: StopToken, first: int, /, *nums: int, **flags: bool) -> None:
    """A positional-only parameter, typed *args and **kwargs."""


@task
def opaque(scope: Scope, stopping: StopToken, thing: Opaque) -> Opaque:
    """A task that can only run in memory."""
    return thing


def registry(*tasks: Task[...]) -> dict[str, Task[...]]:
    return {t.name: t for t in tasks}


def roundtrip(call: TaskCall) -> TaskCall:
    return decode_call(registry(call.task), call.name, encode_call(call, max_bytes=LIMIT))


class TestDecorator:
    def test_bare_decorator_names_the_task_by_module_and_qualname(self) -> None:
        """@task names the task module.qualname and keeps the function as func."""
        assert isinstance(send_receipt, Task)
        assert send_receipt.name == f"{__name__}.send_receipt"
        assert send_receipt.func.__name__ == "send_receipt"
        assert send_receipt.retry is None
        assert send_receipt.timeout is None
        assert send_receipt.__name__ == "send_receipt"
        assert send_receipt.__doc__ == "An async task with two plain arguments."

    def test_decorator_with_options(self) -> None:
        """@task(name=, retry=, timeout=) pins the name and keeps the policy and timeout."""
        assert charge.name == "billing.charge"
        assert isinstance(charge.retry, RetryPolicy)
        assert charge.retry.max_attempts == 5
        assert charge.timeout == 30.0
        assert isinstance(charge.timeout, float)

    def test_async_and_sync_are_told_apart(self) -> None:
        """A task knows whether its function is async."""
        assert send_receipt.__workpool_async__ is True
        assert charge.__workpool_async__ is False
        assert "async" in repr(send_receipt)
        assert "sync" in repr(charge)

    def test_async_callable_object(self) -> None:
        """An object with an async __call__ is an async task."""

        class Job:
            async def __call__(self, scope: Scope, stopping: StopToken, n: int) -> None: ...

        assert task(Job(), name="job").__workpool_async__ is True

    @pytest.mark.parametrize("retry", [3, "exponential", object()])
    def test_retry_must_be_a_policy(self, retry: Any) -> None:
        """retry= takes a RetryPolicy or None, in both forms of the decorator."""
        with pytest.raises(TypeError, match="RetryPolicy"):
            task(retry=retry)
        with pytest.raises(TypeError, match="RetryPolicy"):
            Task(send_receipt.func, retry=retry)

    @pytest.mark.parametrize(
        ("timeout", "error"),
        [
            (0, ValueError),
            (-1, ValueError),
            (math.nan, ValueError),
            (math.inf, ValueError),
            ("3", TypeError),
            (True, TypeError),
        ],
    )
    def test_timeout_is_checked_like_the_pools(self, timeout: Any, error: type[Exception]) -> None:
        """timeout= must be a positive, finite number of seconds, checked at the decorator."""
        with pytest.raises(error, match="timeout"):
            task(timeout=timeout)

    @pytest.mark.parametrize(
        "func",
        [
            lambda: None,
            lambda scope: None,
            lambda *args: None,
            lambda scope, *args: None,
            lambda *, scope, stopping: None,
        ],
    )
    def test_function_must_take_scope_and_stopping_first(self, func: Any) -> None:
        """A function that does not take (scope, stopping) first is refused at decoration."""
        with pytest.raises(TypeError, match=r"must take \(scope, stopping\) first"):
            task(func)

    def test_not_callable(self) -> None:
        """Decorating something that is not callable is a TypeError."""
        with pytest.raises(TypeError, match="needs a function"):
            task(42)  # type: ignore[call-overload]

    def test_a_task_is_not_decorated_twice(self) -> None:
        """task(task) is a TypeError: decorate the function once."""
        with pytest.raises(TypeError, match="already a task"):
            task(send_receipt)

    @pytest.mark.parametrize("name", ["", "   ", 3])
    def test_name_must_be_a_non_empty_str(self, name: Any) -> None:
        """name= must be a non-empty str."""
        with pytest.raises(TypeError, match="task name"):
            task(name=name)(send_receipt.func)

    def test_policy_from_retry_policy_decorator(self) -> None:
        """A policy attached with @retry_policy becomes the task's policy."""
        policy = RetryPolicy.exponential(2)

        @task
        @retry_policy(policy)
        def job(scope: Scope, stopping: StopToken) -> None: ...

        assert job.retry is policy
        assert job.bind().__workpool_retry__ is policy

    def test_two_policies_conflict(self) -> None:
        """@retry_policy and @task(retry=) with different policies is a TypeError."""

        @retry_policy(RetryPolicy.exponential(2))
        def job(scope: Scope, stopping: StopToken) -> None: ...

        with pytest.raises(TypeError, match="give it once"):
            task(retry=RetryPolicy.exponential(3))(job)

    @pytest.mark.anyio
    async def test_calling_a_task_calls_the_function(self) -> None:
        """A task is still a plain call: awaitable for async, a value for sync."""
        assert await send_receipt(SCOPE, StopToken(), 42, "a@example.com") == "42:a@example.com"
        invoice = uuid.uuid4()
        assert charge(SCOPE, StopToken(), invoice=invoice, amount=Decimal(1)) == f"{invoice}:1"


class TestBind:
    def test_bind_makes_a_task_call(self) -> None:
        """bind keeps the arguments as given, positional and keyword."""
        call = send_receipt.bind(42, email="a@example.com")
        assert isinstance(call, TaskCall)
        assert call.task is send_receipt
        assert call.name == send_receipt.name
        assert call.args == (42,)
        assert call.kwargs == {"email": "a@example.com"}

    @pytest.mark.parametrize(
        ("args", "kwargs", "match"),
        [
            ((), {}, "missing a required argument: 'order_id'"),
            ((1,), {}, "missing a required argument: 'email'"),
            ((1, "a", 3), {}, "too many positional arguments"),
            ((1, "a"), {"mail": "b"}, "unexpected keyword argument 'mail'"),
            ((1, "a"), {"order_id": 2}, "multiple values for argument 'order_id'"),
        ],
    )
    def test_arguments_that_do_not_fit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], match: str
    ) -> None:
        """Arguments that do not fit the signature are a TypeError naming the task and its parameters."""
        with pytest.raises(TypeError, match=match) as info:
            send_receipt.bind(*args, **kwargs)
        assert send_receipt.name in str(info.value)
        assert "(order_id: int, email: str)" in str(info.value)

    def test_keyword_only_arguments(self) -> None:
        """A required keyword-only argument must be given by keyword."""
        with pytest.raises(TypeError, match=r"billing\.charge"):
            charge.bind(invoice=uuid.uuid4())  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"billing\.charge"):
            charge.bind(uuid.uuid4(), Decimal(1))  # type: ignore[call-arg]
        assert charge.bind(invoice=uuid.UUID(int=1), amount=Decimal(1)).kwargs["amount"] == 1

    def test_var_positional_and_defaults(self) -> None:
        """*args take any number of positionals; defaulted ones may be left out."""
        assert loose.bind(1, 2, 3, 4).args == (1, 2, 3, 4)
        assert with_defaults.bind(1).args == (1,)
        with pytest.raises(TypeError, match="too many"):
            cast("Any", with_defaults).bind(1, 2, 3)


class TestTaskCall:
    def test_attributes_for_the_pool(self) -> None:
        """A call carries its task's policy and kind for the pool, and retry_of finds the policy."""
        call = charge.bind(invoice=uuid.uuid4(), amount=Decimal(1))
        assert call.__workpool_retry__ is charge.retry
        assert call.__workpool_async__ is False
        assert retry_of(call) is charge.retry
        assert send_receipt.bind(1, "a").__workpool_async__ is True

    @pytest.mark.anyio
    async def test_call_runs_the_function_with_its_arguments(self) -> None:
        """Called as (scope, stopping), a call runs the task function with the bound objects."""
        call = send_receipt.bind(7, email="b@example.com")
        assert await call(SCOPE, StopToken()) == "7:b@example.com"
        thing = Opaque()
        assert opaque.bind(thing)(SCOPE, StopToken()) is thing

    def test_repr(self) -> None:
        """The repr shows the task name and the arguments, shortened."""
        call = send_receipt.bind(42, email="x" * 500)
        text = repr(call)
        assert text.startswith(f"<TaskCall {send_receipt.name}(42, email='xxx")
        assert len(text) < 200

    def test_equality(self) -> None:
        """Two calls of one task with equal arguments are equal; calls are not hashable."""
        assert send_receipt.bind(1, "a") == send_receipt.bind(1, "a")
        assert send_receipt.bind(1, "a") != send_receipt.bind(2, "a")
        assert send_receipt.bind(1, "a") != "nope"
        with pytest.raises(TypeError):
            hash(send_receipt.bind(1, "a"))


@pytest.mark.anyio
async def test_sync_task_call_runs_in_a_pool() -> None:
    """A TaskCall of a sync task is a work delegate the in-memory pool runs."""
    seen: list[tuple[int, str]] = []

    @task
    def record(scope: Scope, stopping: StopToken, n: int, s: str) -> None:
        seen.append((n, s))

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(record.bind(1, "one"))
            await pool.join()
    assert seen == [(1, "one")]


@pytest.mark.anyio
async def test_task_policy_applies_in_a_pool() -> None:
    """The pool finds the task's retry policy on the call (sync task, in memory)."""
    attempts: list[int] = []

    @task(retry=RetryPolicy())
    def flaky(scope: Scope, stopping: StopToken, fail_times: int) -> None:
        attempts.append(scope.attempt)
        if len(attempts) <= fail_times:
            raise ValueError("not yet")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(flaky.bind(2))
            await pool.join()
    assert attempts == [1, 2, 3]
    assert pool.stats().retried == 2
    assert pool.stats().succeeded == 1


@pytest.mark.anyio
async def test_async_task_call_runs_in_a_pool() -> None:
    """A TaskCall of an async task runs on the loop, with the objects as given."""
    seen: list[object] = []
    thing = object()

    @task
    async def record(scope: Scope, stopping: StopToken, value: object) -> None:
        seen.append(value)

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(record.bind(thing))
            await pool.join()
    assert seen == [thing]


class TestEncode:
    def test_small_call_is_compact_json(self) -> None:
        """The payload is compact JSON of args and kwargs."""
        payload = encode_call(send_receipt.bind(42, email="a@example.com"), max_bytes=LIMIT)
        assert payload == b'{"args":[42],"kwargs":{"email":"a@example.com"}}'

    def test_every_kind_that_travels_round_trips(self) -> None:
        """datetime, date, time, timedelta, UUID, Decimal, Enum, dataclasses, models, tuples, sets, int keys."""
        when = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC)
        customer = Customer(name="Ada", since=when, vipLevel=3)
        call = rich.bind(
            when,
            uuid.UUID(int=7),
            customer,
            day=datetime.date(2026, 1, 2),
            at=datetime.time(3, 4, 5),
            lasting=datetime.timedelta(seconds=90),
            color=Color.BLUE,
            address=Address("Main", 3),
            pair=(1, "x"),
            tags={"a", "b"},
            by_id={1: "one"},
            customers=[customer],
            price=Decimal("12.50"),
        )
        back = roundtrip(call)
        assert back == call
        assert type(back.args[0]) is datetime.datetime
        assert back.args[0] == when
        assert back.args[2].vip_level == 3
        assert back.kwargs["address"] == Address("Main", 3)
        assert back.kwargs["pair"] == (1, "x")
        assert back.kwargs["tags"] == {"a", "b"}
        assert back.kwargs["color"] is Color.BLUE
        assert back.kwargs["price"] == Decimal("12.50")

    def test_model_aliases_are_dumped(self) -> None:
        """A model is dumped by alias, the form it validates back from."""
        customer = Customer(name="Ada", since=datetime.datetime(2026, 1, 1), vipLevel=2)
        payload = encode_call(
            rich.bind(customer.since, uuid.UUID(int=1), customer), max_bytes=LIMIT
        )
        assert b'"vipLevel":2' in payload

    @pytest.mark.parametrize(
        ("value", "match"),
        [
            (b"\xff", r"a bytes \(b'\\xff'\) is not JSON"),
            (lambda: 1, "a function"),
            (object(), "a object"),
            (iter([1, 2]), "a list_iterator"),
            ((i for i in range(3)), "a generator"),
            ([1, 2, object()], r"\(at \[2\]\): a object"),
            ({"k": [{"deep": object()}]}, r"\(at \['k'\]\[0\]\['deep'\]\)"),
            ({(1, 2): "tuple key"}, r"\(at key \(1, 2\)\): a tuple"),
            ({"k": {(1, 2): "tuple key"}}, r"\(at \['k'\] key \(1, 2\)\)"),
            (Weird.OPAQUE, r"\(at value\): a object"),
            ({1, frozenset([object()])}, "a object"),
            (Address("Main", cast("int", object())), r"\(at number\)"),
        ],
    )
    def test_values_that_do_not_travel_name_the_argument(self, value: object, match: str) -> None:
        """An argument that is not JSON is a TypeError naming it, by keyword and by position."""
        with pytest.raises(TypeError, match=match) as by_keyword:
            encode_call(loose.bind(1, extra_value=value), max_bytes=LIMIT)
        assert "argument 'extra_value'" in str(by_keyword.value)
        assert loose.name in str(by_keyword.value)
        with pytest.raises(TypeError, match=match) as by_position:
            encode_call(send_receipt.bind(1, value), max_bytes=LIMIT)  # type: ignore[arg-type]
        assert "argument args[1] (email)" in str(by_position.value)

    def test_open_file_is_refused(self, tmp_path: Path) -> None:
        """An open file is refused (pydantic would read it into a list), naming the argument."""
        with (
            (tmp_path / "f.txt").open("w") as handle,
            pytest.raises(TypeError, match="TextIOWrapper") as info,
        ):
            encode_call(loose.bind(1, report=handle), max_bytes=LIMIT)
        assert "argument 'report'" in str(info.value)
        assert "durable channels take str, int" in str(info.value)

    def test_circular_and_too_deep_structures_are_refused(self) -> None:
        """A circular or absurdly deep structure is a TypeError, not a RecursionError."""
        circular: list[object] = [1]
        circular.append(circular)
        with pytest.raises(TypeError, match="argument 'tree'"):
            encode_call(loose.bind(1, tree=circular), max_bytes=LIMIT)
        deep: list[object] = []
        for _ in range(1_000):
            deep = [deep]
        with pytest.raises(TypeError, match="argument 'tree'"):
            encode_call(loose.bind(1, tree=deep), max_bytes=LIMIT)
        shallow: list[object] = []
        for _ in range(50):
            shallow = [shallow]
        assert roundtrip(loose.bind(shallow)).args == (shallow,)

    def test_extra_positional_named_by_var_positional(self) -> None:
        """A bad value in *args is named by position and the *args name."""
        with pytest.raises(TypeError, match=r"args\[2\] \(\*rest\)"):
            encode_call(loose.bind(1, 2, object()), max_bytes=LIMIT)

    def test_model_that_pydantic_cannot_dump(self) -> None:
        """A model holding a value pydantic cannot dump is a TypeError naming the argument."""

        class Holder(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
            thing: Opaque

        with pytest.raises(TypeError, match="argument 'box'"):
            encode_call(loose.bind(1, box=Holder(thing=Opaque())), max_bytes=LIMIT)

    def test_nan_and_infinity_travel(self) -> None:
        """NaN and infinities travel as the JSON extensions and come back as floats."""
        back = roundtrip(loose.bind(math.inf, math.nan))
        assert back.args[0] == math.inf
        assert math.isnan(back.args[1])

    def test_size_limit(self) -> None:
        """Over max_bytes is a ValueError with the size and the limit; at the limit is fine."""
        call = send_receipt.bind(1, "x" * 100)
        size = len(encode_call(call, max_bytes=LIMIT))
        assert len(encode_call(call, max_bytes=size)) == size
        with pytest.raises(
            ValueError, match=rf"{size:,} bytes, over the limit of {size - 1:,} bytes"
        ):
            encode_call(call, max_bytes=size - 1)

    def test_only_task_calls(self) -> None:
        """Encoding anything but a TaskCall says to use @task and bind."""
        with pytest.raises(TypeError, match=r"@task and enqueue task\.bind"):
            encode_call(send_receipt, max_bytes=LIMIT)  # type: ignore[arg-type]


class TestDecode:
    def test_unknown_task(self) -> None:
        """A name not registered is rejected as unknown_task, saying how to register it."""
        with pytest.raises(RejectedMessage) as info:
            decode_call(registry(charge), "nope.task", b'{"args":[],"kwargs":{}}')
        assert info.value.reason == "unknown_task"
        assert "'nope.task'" in str(info.value)
        assert "tasks=" in str(info.value)
        assert "WORKPOOL_TASKS" in str(info.value)
        assert "billing.charge" in str(info.value)

    @pytest.mark.parametrize(
        ("payload", "match"),
        [
            (b"{not json", "not JSON"),
            (b"\xff\xfe", "not JSON"),
            (b"[1, 2]", "payload is not"),
            (b'{"args": [1, "a"]}', "payload is not"),
            (b'{"args": {}, "kwargs": {}}', "payload is not"),
            (b'{"args": [], "kwargs": []}', "payload is not"),
            (
                b'{"args": ["x", "a"], "kwargs": {}}',
                r"args\[0\] \(order_id\): Input should be a valid integer.*got 'x'",
            ),
            (b'{"args": [1], "kwargs": {}}', "email: Missing required argument"),
            (b'{"args": [1, "a", 3], "kwargs": {}}', r"args\[2\]: Unexpected positional argument"),
            (b'{"args": [1, "a"], "kwargs": {"cc": "b"}}', "cc: Unexpected keyword argument"),
        ],
    )
    def test_bad_payload(self, payload: bytes, match: str) -> None:
        """Invalid JSON, a wrong shape, or arguments that do not validate: bad_payload."""
        with pytest.raises(RejectedMessage, match=match) as info:
            decode_call(registry(send_receipt), send_receipt.name, payload)
        assert info.value.reason == "bad_payload"
        assert send_receipt.name in str(info.value)

    def test_nested_validation_error_is_located(self) -> None:
        """A field deep inside a model argument is named in the message."""
        payload = b'{"args":["2026-01-01T00:00:00","00000000-0000-0000-0000-000000000001",{"name":"A","since":"nope"}],"kwargs":{}}'
        with pytest.raises(RejectedMessage, match=r"args\[2\] \(customer\)\['since'\]"):
            decode_call(registry(rich), rich.name, payload)

    def test_str_payload_and_unannotated_parameters(self) -> None:
        """A str payload decodes too; unannotated parameters take the JSON value as it is."""
        call = decode_call(
            registry(loose),
            loose.name,
            '{"args":["2026-01-01",{"a":[1]},3],"kwargs":{"flag":true,"z":null}}',
        )
        assert call.args == ("2026-01-01", {"a": [1]}, 3)
        assert call.kwargs == {"flag": True, "z": None}

    def test_lax_conversion_from_json(self) -> None:
        """Values are converted to the annotated types, as pydantic does for JSON input."""
        call = decode_call(
            registry(charge),
            "billing.charge",
            '{"args":[],"kwargs":{"invoice":"00000000-0000-0000-0000-000000000002","amount":"1.25"}}',
        )
        assert call.kwargs == {"invoice": uuid.UUID(int=2), "amount": Decimal("1.25")}

    def test_defaults_are_left_to_the_function(self) -> None:
        """Decoding adds no arguments the producer did not give."""
        call = roundtrip(with_defaults.bind(1))
        assert call.args == (1,)
        assert call.kwargs == {}
        call = roundtrip(with_defaults.bind(1, c=[2]))
        assert call.kwargs == {"c": [2]}

    def test_strict_models_and_fields_take_json_forms(self) -> None:
        """Validation is pydantic's JSON mode: strict types accept their JSON form."""
        customer = StrictCustomer(
            since=datetime.datetime(2026, 1, 1), ref=uuid.UUID(int=3), color=Color.RED, pair=(1, 2)
        )
        call = strict.bind(customer, uuid.UUID(int=4))
        assert roundtrip(call) == call

    def test_typed_var_positional_and_var_keyword(self) -> None:
        """*args and **kwargs are validated item by item and keep their shape."""
        call = decode_call(
            registry(variadic),
            variadic.name,
            '{"args":[1,"2",3],"kwargs":{"verbose":true,"dry":false}}',
        )
        assert call.args == (1, 2, 3)
        assert call.kwargs == {"verbose": True, "dry": False}
        with pytest.raises(
            RejectedMessage, match=r"args\[2\] \(\*nums\): Input should be a valid integer"
        ):
            decode_call(registry(variadic), variadic.name, '{"args":[1,2,"x"],"kwargs":{}}')
        with pytest.raises(RejectedMessage, match=r"verbose: Input should be a valid boolean"):
            decode_call(
                registry(variadic), variadic.name, '{"args":[1],"kwargs":{"verbose":"maybe"}}'
            )

    def test_positional_only_by_keyword(self) -> None:
        """A positional-only parameter given by keyword goes to **kwargs, as in Python."""
        with pytest.raises(RejectedMessage, match="first: Missing required argument"):
            decode_call(registry(variadic), variadic.name, '{"args":[],"kwargs":{"first":true}}')
        call = decode_call(
            registry(variadic), variadic.name, '{"args":[0],"kwargs":{"first":true}}'
        )
        assert call.args == (0,)
        assert call.kwargs == {"first": True}

    def test_unresolvable_annotation(self) -> None:
        """A task whose annotation names nothing rejects its messages with the NameError."""

        def job(scope: Scope, stopping: StopToken, n: int) -> None: ...

        job.__annotations__["n"] = "NoSuchType"
        with pytest.raises(RejectedMessage, match="NameError"):
            roundtrip(task(job).bind(1))

    def test_validator_is_built_lazily_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A task's validator is built on its first decode, then reused."""
        built: list[object] = []
        real = workpool._payload.build_validator

        def counting(func: Any, names: Any) -> Any:
            built.append(func)
            return real(func, names)

        monkeypatch.setattr("workpool._task.build_validator", counting)

        @task
        def fresh(scope: Scope, stopping: StopToken, n: int) -> None: ...

        assert built == []
        for _ in range(3):
            assert roundtrip(fresh.bind(5)).args == (5,)
        assert built == [fresh.func]

    def test_scope_annotations_are_not_evaluated(self) -> None:
        """Only the task's own annotations are resolved (Scope may be a TYPE_CHECKING import)."""

        def job(scope: Scope, stopping: StopToken, n: int) -> None: ...

        job.__annotations__.update(scope="OnlyForTypeCheckers", stopping="Nowhere")
        job.__annotations__["return"] = "Unresolvable"
        assert roundtrip(task(job).bind(3)).args == (3,)

    def test_annotation_pydantic_cannot_validate(self) -> None:
        """A task whose annotations pydantic cannot validate rejects its messages, every time."""
        payload = b'{"args":[{}],"kwargs":{}}'
        for _ in range(2):
            with pytest.raises(
                RejectedMessage, match="cannot validate its arguments from JSON"
            ) as info:
                decode_call(registry(opaque), opaque.name, payload)
            assert info.value.reason == "bad_payload"


class TestRegistry:
    def test_tasks_and_duplicates(self) -> None:
        """Task objects are registered by name; the same task twice is fine."""
        assert resolve_tasks([send_receipt, charge, send_receipt]) == {
            send_receipt.name: send_receipt,
            "billing.charge": charge,
        }
        assert resolve_tasks(charge) == {"billing.charge": charge}
        assert resolve_tasks([]) == {}

    def test_two_tasks_with_one_name(self) -> None:
        """Two different tasks with one name are a ValueError."""
        other = task(name="billing.charge")(send_receipt.func)
        with pytest.raises(ValueError, match=r"two different tasks are named 'billing\.charge'"):
            resolve_tasks([charge, other])

    def test_module_object(self) -> None:
        """A module gives every Task attribute it has."""
        module = types.ModuleType("jobs")
        module.send = send_receipt  # type: ignore[attr-defined]
        module.charge = charge  # type: ignore[attr-defined]
        module.helper = len  # type: ignore[attr-defined]
        assert set(resolve_tasks([module])) == {send_receipt.name, "billing.charge"}

    def test_module_without_tasks(self) -> None:
        """A module without tasks is a ValueError (a wrong module name, most likely)."""
        with pytest.raises(ValueError, match="has no tasks"):
            resolve_tasks([types.ModuleType("empty")])

    def test_module_names_are_imported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dotted module name is imported; "module.task" names one task."""
        package = tmp_path / "wp_jobs_pkg"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "mail.py").write_text(
            textwrap.dedent(
                """
                from workpool import task

                @task
                def send(scope, stopping, to: str) -> None: ...

                @task(name="mail.bounce")
                async def bounce(scope, stopping) -> None: ...
                """
            )
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "wp_jobs_pkg", raising=False)
        monkeypatch.delitem(sys.modules, "wp_jobs_pkg.mail", raising=False)
        assert set(resolve_tasks(["wp_jobs_pkg.mail"])) == {"wp_jobs_pkg.mail.send", "mail.bounce"}
        assert set(resolve_tasks("wp_jobs_pkg.mail.bounce")) == {"mail.bounce"}
        with pytest.raises(ModuleNotFoundError) as info:
            resolve_tasks(["wp_jobs_pkg.nothing_here"])
        assert "WORKPOOL_TASKS" in "\n".join(getattr(info.value, "__notes__", []))

    @pytest.mark.parametrize(
        ("entry", "match"),
        [
            (len, "decorate"),
            (42, "got 42"),
            (None, "got None"),
        ],
    )
    def test_other_entries(self, entry: Any, match: str) -> None:
        """Anything but tasks, modules and module names is a TypeError."""
        with pytest.raises(TypeError, match=match):
            resolve_tasks([entry])

    def test_a_call_is_not_a_task(self) -> None:
        """A TaskCall in tasks= says to pass the task."""
        with pytest.raises(TypeError, match="not calls"):
            resolve_tasks([send_receipt.bind(1, "a")])  # type: ignore[list-item]

    @pytest.mark.parametrize(
        ("value", "names"),
        [
            ("myapp.jobs, myapp.billing", ["myapp.jobs", "myapp.billing"]),
            ("a,b,,c", ["a", "b", "c"]),
            ("  a \n b ", ["a", "b"]),
            ("", []),
        ],
    )
    def test_tasks_from_env(self, value: str, names: list[str]) -> None:
        """WORKPOOL_TASKS is split on commas and whitespace."""
        assert tasks_from_env(value) == names

    @pytest.mark.parametrize("value", ["a..b", "my-app.jobs", "1a", "a.b."])
    def test_tasks_from_env_refuses_non_names(self, value: str) -> None:
        """An entry that is not a dotted name is a ValueError naming WORKPOOL_TASKS."""
        with pytest.raises(ValueError, match="WORKPOOL_TASKS"):
            tasks_from_env(value)


class TestDeadLetters:
    def test_dead_letter_is_frozen(self) -> None:
        """A DeadLetter holds the fields of the contract and cannot be changed."""
        letter = DeadLetter(
            id=uuid.UUID(int=1),
            name="billing.charge",
            args=[],
            kwargs={"amount": "1"},
            reason="failed",
            error="ValueError: boom",
            traceback=None,
            attempts=3,
            deliveries=1,
            failed_at=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
        )
        assert [f.name for f in dataclasses.fields(letter)] == [
            "id",
            "name",
            "args",
            "kwargs",
            "reason",
            "error",
            "traceback",
            "attempts",
            "deliveries",
            "failed_at",
        ]
        with pytest.raises(dataclasses.FrozenInstanceError):
            letter.reason = "x"  # type: ignore[misc]

    def test_format_error(self) -> None:
        """An exception becomes ("Type: message", traceback text), as strings only."""
        try:
            raise ValueError("boom")
        except ValueError as exc:
            error, text = format_error(exc)
        assert error == "ValueError: boom"
        assert text is not None
        assert text.startswith("Traceback (most recent call last):")
        assert 'raise ValueError("boom")' in text

    def test_format_error_without_traceback(self) -> None:
        """An exception never raised has no traceback; a module-level type is qualified."""
        assert format_error(KeyError("k")) == ("KeyError: 'k'", None)
        assert (
            format_error(RejectedMessage("bad_payload", "nope"))[0]
            == "workpool._payload.RejectedMessage: nope"
        )
        assert format_error(RuntimeError()) == ("RuntimeError", None)

    def test_long_traceback_keeps_head_and_tail(self) -> None:
        """A huge traceback is cut in the middle; the error line at the end stays."""

        def deep(n: int) -> None:
            if n == 0:
                raise ValueError("bottom" + "!" * 50_000)
            deep(n - 1)

        try:
            deep(5)
        except ValueError as exc:
            _, text = format_error(exc)
        assert text is not None
        assert len(text) < 33_000
        assert "characters cut" in text
        assert text.startswith("Traceback")
        assert text.rstrip().endswith("!")

    def test_plain_arguments(self) -> None:
        """Stored arguments decode as plain JSON; an undecodable payload gives nothing."""
        payload = encode_call(
            rich.bind(
                datetime.datetime(2026, 1, 1),
                uuid.UUID(int=1),
                Customer(name="A", since=datetime.datetime(2026, 1, 1)),
            ),
            max_bytes=LIMIT,
        )
        args, kwargs = plain_arguments(payload)
        assert args[0] == "2026-01-01T00:00:00"
        assert kwargs == {}
        assert plain_arguments(b"{nope") == ([], {})
        assert plain_arguments(b"[1]") == ([], {})
        assert plain_arguments('{"args": 3, "kwargs": {"a": 1}}') == ([], {"a": 1})
