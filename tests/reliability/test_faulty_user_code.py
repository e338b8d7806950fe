"""User code that raises or hangs around the work (scenarios 11, 12, 13)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import svcs

from workpool import (
    FullMode,
    ItemState,
    Scope,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
    WorkItem,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


async def fail(scope: Scope, stopping: StopToken) -> None:
    raise ValueError("boom")


async def use_session(scope: Scope, stopping: StopToken) -> None:
    scope.session.data["touched"] = True


class Service:
    """A scoped service."""


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


# -- scenario 11: cleanups and on_end hooks that raise or hang --------------------


async def test_a_raising_scope_cleanup_does_not_stop_the_consumer(
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """Cleanups that raise (svcs's, or a container's aclose) are logged; later items run."""

    def broken_service() -> Iterator[Service]:
        yield Service()
        raise RuntimeError("svcs cleanup failed")

    registry = svcs.Registry()
    registry.register_factory(Service, broken_service)

    class BrokenContainer:
        def get(self, svc_type: Any, /) -> Any:
            return Service()

        async def aget(self, svc_type: Any, /) -> Any:
            return Service()

        async def aclose(self) -> None:
            raise RuntimeError("aclose failed")

    async def get_service(scope: Scope, stopping: StopToken) -> None:
        scope.get(Service)

    for pool in (
        WorkerPool(consumers=1, registry=registry),
        WorkerPool(consumers=1, scope_factory=BrokenContainer),
    ):
        with anyio.fail_after(10):
            async with pool:
                items = [await pool.enqueue(get_service) for _ in range(5)]
        assert [item.state for item in items] == [ItemState.SUCCEEDED] * 5
        assert_accounted(pool)
    assert len(errors(workpool_logs, "cleanup of the scope of")) == 5


async def test_a_raising_session_on_end_hook_does_not_stop_the_consumer(
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """A session on_end hook that raises (sync or async) is logged; later items run."""

    def sync_hook(session: Session) -> None:
        raise RuntimeError("persisting the session failed")

    async def async_hook(session: Session) -> None:
        raise RuntimeError("persisting the session failed")

    manager = SessionManager(on_end=sync_hook)
    manager.add_on_end(async_hook)
    pool = WorkerPool(consumers=1, session_manager=manager)
    with anyio.fail_after(10):
        async with pool:
            items = [await pool.enqueue(use_session) for _ in range(5)]
    assert [item.state for item in items] == [ItemState.SUCCEEDED] * 5
    assert len(manager) == 0
    assert len(errors(workpool_logs, "on_end hook")) == 10
    assert_accounted(pool)


async def test_a_hanging_scope_cleanup_cannot_hold_shutdown(
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """A cleanup that never returns is cut off after deadline + grace; shutdown returns."""
    cleanup_started = anyio.Event()

    async def hanging_service() -> AsyncIterator[Service]:
        yield Service()
        cleanup_started.set()
        await anyio.sleep(3600)

    registry = svcs.Registry()
    registry.register_factory(Service, hanging_service)

    async def get_service(scope: Scope, stopping: StopToken) -> None:
        await scope.aget(Service)

    deadline, grace = 0.2, 0.2
    pool = WorkerPool(
        consumers=2, registry=registry, shutdown_deadline=deadline, cleanup_grace=grace
    )
    with anyio.fail_after(10):
        async with pool:
            stuck = await pool.enqueue(get_service)
            await cleanup_started.wait()
            others = [await pool.enqueue(noop) for _ in range(5)]
            await anyio.wait_all_tasks_blocked()
            began = time.monotonic()
        elapsed = time.monotonic() - began
    assert elapsed < deadline + grace + 0.5
    assert [item.state for item in others] == [ItemState.SUCCEEDED] * 5
    assert stuck.state is ItemState.SUCCEEDED  # the work itself had finished
    assert errors(workpool_logs, "was cut off")
    assert_accounted(pool)


@pytest.mark.parametrize("where", ["release", "sweep"])
async def test_a_hanging_session_on_end_hook_cannot_hold_shutdown(
    where: str,
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """An on_end hook that never returns (at an item's release, or in the sweeper) is cut off."""
    hook_started = anyio.Event()

    async def hang(session: Session) -> None:
        if hook_started.is_set():
            return  # every item's session ends with the hook: only the first hangs
        hook_started.set()
        await anyio.sleep(3600)

    manager = SessionManager(default_duration=0.01, on_end=hang)
    deadline, grace = 0.2, 0.2
    pool = WorkerPool(
        consumers=2,
        session_manager=manager,
        shutdown_deadline=deadline,
        cleanup_grace=grace,
        cleanup_interval=0.02,
    )
    with anyio.fail_after(10):
        async with pool:
            if where == "release":
                await pool.enqueue(use_session)
            else:
                manager.create_session(duration=0.01)  # expires, held by nobody
            await hook_started.wait()
            others = [await pool.enqueue(noop) for _ in range(5)]
            await anyio.wait_all_tasks_blocked()
            began = time.monotonic()
        elapsed = time.monotonic() - began
    assert elapsed < deadline + grace + 0.5
    assert [item.state for item in others] == [ItemState.SUCCEEDED] * 5
    if where == "sweep":
        assert errors(workpool_logs, "sweeping expired sessions was cut off")
    assert_accounted(pool)


# -- scenario 12: a scope factory or session manager that raises ------------------


async def test_a_raising_scope_factory_fails_the_item_not_the_consumer(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """A scope factory that raises: the item is failed and dead-lettered; the next one runs."""
    calls = 0

    def flaky_factory() -> svcs.Container:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError("no database connection")
        return svcs.Container(svcs.Registry())

    dead: list[tuple[WorkItem, BaseException]] = []
    pool = WorkerPool(
        consumers=1,
        scope_factory=flaky_factory,
        on_dead_letter=lambda item, exc: dead.append((item, exc)),
    )
    with anyio.fail_after(10):
        async with pool:
            items = [await pool.enqueue(noop) for _ in range(6)]
    assert [item.state for item in items] == [ItemState.FAILED, ItemState.SUCCEEDED] * 3
    assert [item for item, _ in dead] == items[::2]
    assert all(isinstance(exc, RuntimeError) for _, exc in dead)
    assert pool.stats().dead_lettered == 3
    assert_accounted(pool)


@pytest.mark.parametrize("method", ["create_session", "add_scope", "is_active", "release"])
async def test_a_raising_session_manager_fails_the_item_not_the_consumer(
    method: str,
    monkeypatch: pytest.MonkeyPatch,
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """A session manager that raises while making or joining a session: the item fails and is
    dead-lettered; one that raises on release is logged; the consumer goes on either way."""
    manager = SessionManager()
    parent = manager.create_session("request")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{method} failed")

    async def broken_async(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{method} failed")

    monkeypatch.setattr(manager, method, broken_async if method == "release" else broken)
    dead: list[WorkItem] = []
    pool = WorkerPool(
        consumers=1,
        session_manager=manager,
        on_dead_letter=lambda item, exc: dead.append(item),
    )
    first: WorkItem | None
    with anyio.fail_after(10):
        async with pool:
            try:
                first = await pool.enqueue(use_session, parent)
            except RuntimeError as exc:  # the parent could not be held at the call
                assert str(exc) == f"{method} failed"  # noqa: PT017
                assert method in ("add_scope", "is_active")
                first = None
            second = await pool.enqueue(use_session)
            last = await pool.enqueue(noop)
    assert last.state is ItemState.SUCCEEDED
    if method == "release":
        assert first is not None
        assert first.state is second.state is ItemState.SUCCEEDED
        assert errors(workpool_logs, "releasing session")
    elif method == "create_session":
        assert first is not None
        assert first.state is ItemState.SUCCEEDED  # it joins its parent
        assert second.state is ItemState.FAILED
        assert dead == [second]
    elif first is not None:
        assert first.state is ItemState.FAILED
        assert dead[0] is first
    assert_accounted(pool)


# -- scenario 13: hooks that raise -----------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_hooks_are_logged_and_never_break_the_pool(
    kind: str,
    assert_accounted: Callable[[WorkerPool], None],
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """on_drop, on_dead_letter and on_abandoned that raise: logged, and the pool carries on."""
    calls: list[str] = []

    def make_hook(name: str) -> Callable[..., Any]:
        def sync_hook(*args: Any) -> None:
            calls.append(name)
            raise RuntimeError(f"{name} failed")

        async def async_hook(*args: Any) -> None:
            calls.append(name)
            await anyio.sleep(0)
            raise RuntimeError(f"{name} failed")

        return sync_hook if kind == "sync" else async_hook

    gate = anyio.Event()

    async def blocked(scope: Scope, stopping: StopToken) -> None:
        await gate.wait()

    async def forever(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(3600)

    pool = WorkerPool(
        consumers=1,
        capacity=2,
        full_mode=FullMode.DROP_OLDEST,
        shutdown_deadline=0.1,
        on_drop=make_hook("on_drop"),
        on_dead_letter=make_hook("on_dead_letter"),
        on_abandoned=make_hook("on_abandoned"),
    )
    with anyio.fail_after(10):
        async with pool:
            await pool.enqueue(blocked)
            await anyio.wait_all_tasks_blocked()
            for _ in range(3):
                await pool.enqueue(noop)  # the third drops the oldest
            pool.enqueue_nowait(noop)  # drops again, from sync code
            await anyio.wait_all_tasks_blocked()
            gate.set()
            await pool.join()
            failed = [await pool.enqueue(fail) for _ in range(2)]
            await pool.join()
            ok = await pool.enqueue(noop)
            await pool.join()
            await pool.enqueue(forever)
            await pool.enqueue(noop)
            await anyio.wait_all_tasks_blocked()
    assert ok.state is ItemState.SUCCEEDED
    assert [item.state for item in failed] == [ItemState.FAILED] * 2
    assert calls.count("on_drop") == 2
    assert calls.count("on_dead_letter") == 2
    assert calls.count("on_abandoned") == 1
    stats = pool.stats()
    assert (stats.dropped, stats.dead_lettered, stats.cancelled, stats.abandoned) == (2, 2, 1, 1)
    for name in ("on_drop", "on_dead_letter", "on_abandoned"):
        assert errors(workpool_logs, f"{name} hook"), name
    assert_accounted(pool)


async def test_a_hanging_on_abandoned_hook_cannot_hold_shutdown(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """An on_abandoned hook that never returns is cut off; shutdown returns."""

    async def hang(items: list[WorkItem]) -> None:
        await anyio.sleep(3600)

    async def forever(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(3600)

    deadline, grace = 0.1, 0.2
    pool = WorkerPool(
        consumers=1, shutdown_deadline=deadline, cleanup_grace=grace, on_abandoned=hang
    )
    with anyio.fail_after(10):
        async with pool:
            await pool.enqueue(forever)
            await pool.enqueue(noop)
            await anyio.wait_all_tasks_blocked()
            began = time.monotonic()
        elapsed = time.monotonic() - began
    assert elapsed < deadline + grace + 0.5
    assert_accounted(pool)
