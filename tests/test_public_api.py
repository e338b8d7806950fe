"""The public front door: exactly these names, importable from ``workpool``, typed."""

from __future__ import annotations

import importlib.resources
import inspect

import pytest

import workpool

PUBLIC = [
    "BackgroundWorker",
    "Channel",
    "ChannelUnavailableError",
    "DeadLetter",
    "DrainReport",
    "FullMode",
    "ItemState",
    "LogContextFilter",
    "PoolClosedError",
    "PoolSettings",
    "PoolStats",
    "QueueFullError",
    "RetryPolicy",
    "RetrySettings",
    "Scope",
    "ScopeFactory",
    "ServiceContainer",
    "Session",
    "SessionManager",
    "SessionSettings",
    "SettingsError",
    "SqliteChannel",
    "StopToken",
    "Task",
    "TaskCall",
    "TimingSummary",
    "Work",
    "WorkItem",
    "WorkerPool",
    "WorkpoolError",
    "current_scope",
    "exit_status",
    "open_channel",
    "retry_policy",
    "run_until_signalled",
    "serve_until_signalled",
    "task",
]


def test_all_is_pinned() -> None:
    """workpool.__all__ is exactly the public list, sorted."""
    assert workpool.__all__ == PUBLIC
    assert sorted(workpool.__all__) == workpool.__all__


def test_design_names_are_public() -> None:
    """Every name the design contract lists is in __all__."""
    design = {
        "WorkerPool",
        "BackgroundWorker",
        "WorkItem",
        "ItemState",
        "FullMode",
        "Scope",
        "ScopeFactory",
        "current_scope",
        "Session",
        "SessionManager",
        "StopToken",
        "RetryPolicy",
        "retry_policy",
        "PoolSettings",
        "PoolStats",
        "DrainReport",
        "WorkpoolError",
        "QueueFullError",
        "PoolClosedError",
        "LogContextFilter",
        "task",
        "Task",
        "TaskCall",
        "DeadLetter",
        "ChannelUnavailableError",
    }
    assert design <= set(workpool.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_importable(name: str) -> None:
    """Every public name can be imported from workpool itself."""
    namespace: dict[str, object] = {}
    exec(f"from workpool import {name}", namespace)
    assert namespace[name] is getattr(workpool, name)


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in PUBLIC
        if inspect.isclass(getattr(workpool, n)) or inspect.isfunction(getattr(workpool, n))
    ],
)
def test_module_is_workpool(name: str) -> None:
    """Public classes and functions report workpool as their module, not a private one."""
    assert getattr(workpool, name).__module__ == "workpool"


def test_errors_share_one_base() -> None:
    """Every workpool error subclasses WorkpoolError, itself an Exception."""
    assert issubclass(workpool.WorkpoolError, Exception)
    for error in (
        workpool.QueueFullError,
        workpool.PoolClosedError,
        workpool.SettingsError,
        workpool.ChannelUnavailableError,
    ):
        assert issubclass(error, workpool.WorkpoolError)


def test_py_typed_is_shipped() -> None:
    """The package ships its py.typed marker."""
    assert importlib.resources.files("workpool").joinpath("py.typed").is_file()
