"""Nothing leaks between items: context variables, scopes, sessions (scenarios 9 and 10)."""

from __future__ import annotations

from collections import Counter
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.helpers.services import CountingContainer, Resource, resource_registry
from workpool import (
    RetryPolicy,
    Scope,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
    current_scope,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import svcs

pytestmark = pytest.mark.anyio

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


async def test_context_variables_do_not_leak_to_the_next_item() -> None:
    """A context variable set by one item (async, sync, failing) is unset in the next one."""
    seen: list[str | None] = []

    async def set_async(scope: Scope, stopping: StopToken) -> None:
        seen.append(request_id.get())
        request_id.set("async")

    def set_sync(scope: Scope, stopping: StopToken) -> None:
        seen.append(request_id.get())
        request_id.set("sync")

    async def set_and_fail(scope: Scope, stopping: StopToken) -> None:
        seen.append(request_id.get())
        request_id.set("failed")
        raise RuntimeError("boom")

    pool = WorkerPool(consumers=1)
    with anyio.fail_after(10):
        async with pool:
            for _ in range(20):
                for work in (set_async, set_sync, set_and_fail):
                    await pool.enqueue(work)
    assert seen == [None] * 60
    assert request_id.get() is None


async def test_each_item_sees_only_its_own_scope() -> None:
    """Interleaved items on several consumers each see their own scope, across awaits."""
    mismatches: list[tuple[Any, Any]] = []
    seen_scopes: list[Scope] = []

    async def check(scope: Scope, stopping: StopToken) -> None:
        seen_scopes.append(scope)
        for _ in range(3):
            if current_scope() is not scope:
                mismatches.append((current_scope(), scope))
            await anyio.sleep(0)

    def check_sync(scope: Scope, stopping: StopToken) -> None:
        seen_scopes.append(scope)
        if current_scope() is not scope:
            mismatches.append((current_scope(), scope))

    pool = WorkerPool(consumers=4)
    with anyio.fail_after(10):
        async with pool:
            for index in range(200):
                await pool.enqueue(check_sync if index % 5 == 0 else check)
    assert not mismatches
    assert len({id(scope) for scope in seen_scopes}) == 200
    assert current_scope() is None


@pytest.fixture
def resources() -> Iterator[tuple[svcs.Registry, Counter[int], Counter[int]]]:
    """A registry of `Resource`, with counts of resources opened and closed."""
    registry, opened, closed = resource_registry()
    yield registry, opened, closed
    registry.close()


async def test_every_scope_and_session_is_closed_exactly_once(
    resources: tuple[svcs.Registry, Counter[int], Counter[int]],
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """1,000 mixed items (ok, error, retry, timeout, sync, cancelled, abandoned): each scope
    and each session is closed exactly once, and none is left open."""
    registry, opened, closed = resources
    made: list[CountingContainer] = []
    ended: Counter[Any] = Counter()
    manager = SessionManager(on_end=lambda session: ended.update([session.id]))
    retry = RetryPolicy.exponential(3, initial=0.0)

    async def ok(scope: Scope, stopping: StopToken) -> None:
        scope.get(Resource)
        scope.session.data["ok"] = True

    async def error(scope: Scope, stopping: StopToken) -> None:
        scope.get(Resource)
        assert scope.session is not None
        raise ValueError("boom")

    async def slow(scope: Scope, stopping: StopToken) -> None:
        scope.get(Resource)
        await anyio.sleep(60)

    def sync_ok(scope: Scope, stopping: StopToken) -> None:
        scope.get(Resource)
        assert scope.session is not None

    kinds: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (ok, {}),
        (error, {}),
        (error, {"retry": retry}),
        (slow, {"timeout": 0.001}),
        (slow, {"timeout": 0.001, "retry": retry}),
        (sync_ok, {}),
    ]
    requests: list[tuple[Session, str]] = []
    pool = WorkerPool(
        consumers=8,
        capacity=2000,
        shutdown_deadline=0.5,
        cleanup_grace=0.5,
        session_manager=manager,
        scope_factory=lambda: CountingContainer(registry, made),
    )
    with anyio.fail_after(20):
        async with pool:
            for index in range(1000):
                work, options = kinds[index % len(kinds)]
                parent = None
                if index % 3 == 0:  # a request hands its session to the item, then leaves
                    request_scope = f"request {index}"
                    parent = manager.create_session(request_scope)
                    requests.append((parent, request_scope))
                await pool.enqueue(work, parent, **options)
                if index % 100 == 0:
                    await anyio.sleep(0)
            for parent, request_scope in requests:
                await manager.release(parent, request_scope)
            await pool.join()
            # at the deadline: 8 in flight (cancelled) and some queued (abandoned)
            for index in range(20):
                parent = manager.create_session(f"late request {index}")
                await pool.enqueue(slow, parent)
                await manager.release(parent, f"late request {index}")
    report = pool.report
    assert report is not None
    assert len(report.cancelled) == 8
    assert len(report.abandoned) == 12
    assert_accounted(pool)
    assert len(made) > 1000  # one container per attempt
    assert {container.closes for container in made} == {1}
    assert set(opened) == set(closed)
    assert set(closed.values()) == {1}
    assert set(ended.values()) == {1}
    assert len(manager) == 0
