"""workpool: in-process background work for async Python services, on anyio.

A bounded channel (`BackgroundWorker`) feeds N consumers (`WorkerPool`); each item
runs in its own DI scope and session, under its retry policy, and the pool drains
gracefully on shutdown. See the README for a tour.
"""

from __future__ import annotations

import contextlib

from ._channel import BackgroundWorker as BackgroundWorker
from ._channel import Channel as Channel
from ._context import current_scope as current_scope
from ._exceptions import ChannelUnavailableError as ChannelUnavailableError
from ._exceptions import PoolClosedError as PoolClosedError
from ._exceptions import QueueFullError as QueueFullError
from ._exceptions import SettingsError as SettingsError
from ._exceptions import WorkpoolError as WorkpoolError
from ._full import FullMode as FullMode
from ._item import ItemState as ItemState
from ._item import Work as Work
from ._item import WorkItem as WorkItem
from ._log import LogContextFilter as LogContextFilter
from ._open_channel import open_channel as open_channel
from ._pool import WorkerPool as WorkerPool
from ._retry import RetryPolicy as RetryPolicy
from ._retry import retry_policy as retry_policy
from ._runner import exit_status as exit_status
from ._runner import run_until_signalled as run_until_signalled
from ._runner import serve_until_signalled as serve_until_signalled
from ._scope import Scope as Scope
from ._scope import ScopeFactory as ScopeFactory
from ._scope import ServiceContainer as ServiceContainer
from ._session import Session as Session
from ._session import SessionManager as SessionManager
from ._settings import PoolSettings as PoolSettings
from ._settings import RetrySettings as RetrySettings
from ._settings import SessionSettings as SessionSettings
from ._sqlite import SqliteChannel as SqliteChannel
from ._stats import DrainReport as DrainReport
from ._stats import PoolStats as PoolStats
from ._stats import TimingSummary as TimingSummary
from ._stop import StopToken as StopToken
from ._task import DeadLetter as DeadLetter
from ._task import Task as Task
from ._task import TaskCall as TaskCall
from ._task import task as task

__all__ = [
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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("workpool."):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "workpool"
del _name, _obj
