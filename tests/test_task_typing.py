"""Static typing of tasks: mypy --strict checks this file (make typecheck).

Each deliberate misuse carries a ``# type: ignore[code]``. mypy's
``warn_unused_ignores`` (part of ``strict``) fails the type check if one of these lines
stops being an error, that is, if ``bind`` or ``task`` stop being typed from the
function's signature. The tests also run, to show what happens at run time.
"""

from __future__ import annotations

import datetime

import pytest

from workpool import Scope, StopToken, TaskCall, task


@task
async def send_receipt(scope: Scope, stopping: StopToken, order_id: int, email: str) -> None:
    """Two typed arguments."""


@task(name="reports.build", timeout=60)
def build_report(scope: Scope, stopping: StopToken, *, day: datetime.date) -> None:
    """A keyword-only argument, through the decorator with options."""


def test_bind_is_typed_from_the_signature() -> None:
    """bind takes exactly the arguments after (scope, stopping), with their types."""
    call: TaskCall = send_receipt.bind(42, "a@example.com")
    send_receipt.bind(42, email="a@example.com")
    build_report.bind(day=datetime.date(2026, 12, 1))
    assert call.args == (42, "a@example.com")


def test_wrong_argument_types_are_type_errors() -> None:
    """A wrong argument type is a mypy error (arg-type); bind itself does not check types."""
    call = send_receipt.bind("forty-two", "a@example.com")  # type: ignore[arg-type]
    assert call.args[0] == "forty-two"
    build_report.bind(day="2026-12-01")  # type: ignore[arg-type]


def test_wrong_arity_is_a_type_error_and_a_runtime_error() -> None:
    """Missing or unexpected arguments fail under mypy and at run time."""
    with pytest.raises(TypeError, match="missing a required argument"):
        send_receipt.bind(42)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        send_receipt.bind(42, "a@example.com", cc="b@example.com")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="too many positional arguments"):
        build_report.bind(datetime.date(2026, 12, 1))  # type: ignore[call-arg]


def test_plain_call_is_typed() -> None:
    """Calling the task takes (scope, stopping) and then the same typed arguments."""

    async def use(scope: Scope, stopping: StopToken) -> None:
        await send_receipt(scope, stopping, 1, "a@example.com")
        await send_receipt(scope, stopping, "1", "a@example.com")  # type: ignore[arg-type]

    assert use is not None


def test_decorating_a_function_without_scope_and_stopping() -> None:
    """A function not taking (scope, stopping) first is a mypy error and a TypeError."""

    def no_scope(order_id: int) -> None: ...

    with pytest.raises(TypeError, match="must take"):
        task(no_scope)  # type: ignore[arg-type]
