"""Checks and choices behind `WorkerPool`'s constructor arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._channel import BackgroundWorker
from ._full import FullMode
from ._scope import ScopeFactory, svcs_scope_factory
from ._seam import Channel
from ._session import SessionManager
from ._svcs import svcs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._hooks import Hook
    from ._settings import PoolSettings

__all__ = [
    "check_hooks",
    "choose_channel",
    "choose_scope_factory",
    "resolve_tasks",
    "settings_arguments",
]


def choose_channel(
    worker: Channel | None,
    channel: Channel | None,
    capacity: int,
    full_mode: FullMode | str,
    *,
    enqueue_timeout: float | None,
    on_drop: Hook | None,
) -> Channel:
    """The channel given as *worker* or *channel* (one name for one thing), or a
    new `BackgroundWorker` with the pool's channel arguments."""
    if channel is not None:
        if worker is not None:
            raise ValueError("pass worker or channel, not both (they name the same thing)")
        worker = channel
    if worker is None:
        return BackgroundWorker(
            capacity, full_mode, enqueue_timeout=enqueue_timeout, on_drop=on_drop
        )
    if not isinstance(worker, Channel):
        raise TypeError(f"worker must be a BackgroundWorker (or a Channel), got {worker!r}")
    if capacity != 1000 or full_mode != FullMode.WAIT or enqueue_timeout is not None:
        raise ValueError(
            "capacity, full_mode and enqueue_timeout belong to the worker passed as "
            "worker=; configure them on the BackgroundWorker itself"
        )
    if on_drop is not None:
        worker.add_drop_hook(on_drop)
    return worker


def choose_scope_factory(
    registry: svcs.Registry | None, scope_factory: ScopeFactory | None
) -> ScopeFactory:
    """*scope_factory*, or svcs containers over *registry* (an empty one by default)."""
    if registry is not None and scope_factory is not None:
        raise ValueError("pass registry or scope_factory, not both")
    if registry is not None and not isinstance(registry, svcs.Registry):
        raise TypeError(f"registry must be an svcs.Registry, got {registry!r}")
    if scope_factory is not None:
        if not callable(scope_factory):
            raise TypeError(f"scope_factory must be callable, got {scope_factory!r}")
        return scope_factory
    return svcs_scope_factory(registry if registry is not None else svcs.Registry())


def check_hooks(**hooks: Hook | None) -> None:
    """`TypeError` naming the first hook that is neither None nor callable."""
    for argument, hook in hooks.items():
        if hook is not None and not callable(hook):
            raise TypeError(f"{argument} must be callable, got {hook!r}")


def resolve_tasks(tasks: tuple[Any, ...]) -> Mapping[str, Any]:
    """The registry of named tasks handed to ``channel.open``."""
    # TODO(lead): once branch `tasks` is merged, workpool._task.resolve_tasks always
    # exists; drop the guard and the {} fallback.
    try:
        from ._task import resolve_tasks as resolve  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return {}
    registry: Mapping[str, Any] = resolve(tasks)
    return registry


def settings_arguments(settings: PoolSettings | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """`WorkerPool`'s constructor arguments from *settings* (read now when None),
    with *overrides* over them."""
    if settings is None:
        from ._settings import PoolSettings

        settings = PoolSettings()
    kwargs: dict[str, Any] = {
        "consumers": settings.consumers,
        "shutdown_deadline": settings.shutdown_deadline,
        "task_timeout": settings.task_timeout,
        "thread_limit": settings.thread_limit,
        "default_retry": settings.retry.policy(),
        "cleanup_interval": settings.session.cleanup_interval,
        "blocked_loop_threshold": settings.blocked_loop_threshold,
    }
    if settings.tasks and "tasks" not in overrides:
        kwargs["tasks"] = settings.tasks
    if "worker" not in overrides and "channel" not in overrides:
        from ._settings_channel import channel_arguments

        # memory: the pool makes its BackgroundWorker (with on_drop) from these;
        # a durable URL: the channel, opened here.
        kwargs.update(channel_arguments(settings, build=True))
    if "session_manager" not in overrides:
        kwargs["session_manager"] = SessionManager(settings.session.default_duration)
    kwargs.update(overrides)
    return kwargs
