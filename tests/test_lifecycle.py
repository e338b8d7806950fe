"""The per-item lifecycle: scopes, scoped services, current_scope, context, sessions."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import pytest
import svcs
from tenacity import stop_after_attempt

from tests.helpers.accounting import assert_accounted
from tests.helpers.services import Connection
from tests.helpers.services import ConnectionTracker as Tracker
from workpool import (
    ItemState,
    RetryPolicy,
    Scope,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
    WorkItem,
    current_scope,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID


# -- scopes and scoped services ------------------------------------------------------


@pytest.mark.anyio
async def test_scoped_services_are_fresh_per_item_and_cleaned_up() -> None:
    """Each item gets its own instance of a scoped service, cleaned up when it ends."""
    tracker = Tracker()
    seen: list[tuple[Connection, bool, list[bool]]] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        conn = scope.get(Connection)
        again = await scope.aget(Connection)
        # cleanups of the earlier items have already run
        seen.append((conn, conn is again, [c.closed for c in tracker.created if c is not conn]))

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, registry=tracker.registry()) as pool:
            for _ in range(3):
                await pool.enqueue(work)
            await pool.join()
    assert len(tracker.created) == 3
    assert len({id(c) for c in tracker.created}) == 3
    assert all(same for _, same, _ in seen)
    assert [earlier for _, _, earlier in seen] == [[], [True], [True, True]]
    assert all(conn.closed for conn in tracker.created)


@pytest.mark.anyio
async def test_a_scope_that_asks_for_nothing_makes_no_container() -> None:
    """An item that never asks for a service does not call the registry's factories."""
    tracker = Tracker()

    async def work(scope: Scope, stopping: StopToken) -> None:
        pass

    with anyio.fail_after(5):
        async with WorkerPool(registry=tracker.registry()) as pool:
            item = await pool.enqueue(work)
            await pool.join()
    assert tracker.created == []
    assert item.state is ItemState.SUCCEEDED


class CountingContainer:
    """A hand-made ServiceContainer for a custom scope factory."""

    instances: ClassVar[list[CountingContainer]] = []

    def __init__(self) -> None:
        self.closed = 0
        self.requests: list[Any] = []
        CountingContainer.instances.append(self)

    def get(self, svc_type: Any, /) -> Any:
        self.requests.append(svc_type)
        return f"{svc_type.__name__} from {id(self)}"

    async def aget(self, svc_type: Any, /) -> Any:
        return self.get(svc_type)

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.anyio
async def test_a_custom_scope_factory_provides_the_services() -> None:
    """scope_factory= replaces svcs: one container per item, closed once after it."""
    CountingContainer.instances = []
    got: list[str] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        got.append(scope.get(str))
        got.append(await scope.aget(str))

    with anyio.fail_after(5):
        async with WorkerPool(consumers=2, scope_factory=CountingContainer) as pool:
            for _ in range(4):
                await pool.enqueue(work)
            await pool.join()
    containers = CountingContainer.instances
    assert len(containers) == 4
    assert [c.closed for c in containers] == [1, 1, 1, 1]
    assert [c.requests for c in containers] == [[str, str]] * 4
    assert len(set(got)) == 4


@pytest.mark.anyio
async def test_current_scope_is_the_items_scope_only_while_it_runs() -> None:
    """current_scope() is the item's scope inside async and sync work, None after."""
    inside: list[tuple[Scope, Scope | None]] = []

    async def async_work(scope: Scope, stopping: StopToken) -> None:
        inside.append((scope, current_scope()))
        await anyio.lowlevel.checkpoint()
        inside.append((scope, current_scope()))

    def sync_work(scope: Scope, stopping: StopToken) -> None:
        inside.append((scope, current_scope()))

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(async_work)
            await pool.enqueue(sync_work)
            await pool.join()
            assert current_scope() is None
    assert len(inside) == 3
    assert all(scope is current for scope, current in inside)
    assert inside[0][0] is not inside[2][0]
    assert all(scope.closed for scope, _ in inside)
    assert current_scope() is None


request_id: ContextVar[str] = ContextVar("request_id", default="unset")


@pytest.mark.anyio
async def test_a_context_variable_set_by_one_item_is_not_seen_by_the_next() -> None:
    """Each item runs in its own copy of the consumer's context."""
    seen: list[str] = []

    async def setter(scope: Scope, stopping: StopToken) -> None:
        seen.append(request_id.get())
        request_id.set("first")
        await anyio.lowlevel.checkpoint()
        seen.append(request_id.get())

    async def reader(scope: Scope, stopping: StopToken) -> None:
        seen.append(request_id.get())

    def sync_reader(scope: Scope, stopping: StopToken) -> None:
        seen.append(request_id.get())

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            for work in (setter, reader, setter, sync_reader, reader):
                await pool.enqueue(work)
            await pool.join()
    assert seen == ["unset", "first", "unset", "unset", "first", "unset", "unset"]
    assert request_id.get() == "unset"


# -- sessions ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_shared_parent_session_outlives_the_request() -> None:
    """A request's session stays alive while its background item runs, and ends when
    the item leaves, with on_end called exactly once."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    entered = anyio.Event()
    release = anyio.Event()
    inside: list[tuple[UUID, bool, str]] = []

    async def background(scope: Scope, stopping: StopToken) -> None:
        entered.set()
        await release.wait()
        session = scope.session
        inside.append((scope.session_id or session.id, session.ended, session.data["user"]))
        session.data["receipt"] = "sent"

    with anyio.fail_after(5):
        async with WorkerPool(session_manager=manager) as pool:
            assert pool.session_manager is manager
            request_scope_id = "request-1"
            session = manager.create_session(request_scope_id)
            session.data["user"] = "ada"
            item = await pool.enqueue(background, session)
            await entered.wait()
            await manager.release(session, request_scope_id)  # the request is done
            assert not session.ended
            assert manager.is_active(session)
            assert len(manager) == 1
            release.set()
            await pool.join()
            assert session.ended
    assert item.state is ItemState.SUCCEEDED
    assert inside == [(session.id, False, "ada")]
    assert ended == [session]
    assert session.data["receipt"] == "sent"
    assert len(manager) == 0


@pytest.mark.anyio
async def test_the_request_outliving_its_item_keeps_the_session() -> None:
    """A background item that finishes first does not end its parent session."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)

    async def background(scope: Scope, stopping: StopToken) -> None:
        scope.session.data["done"] = True

    with anyio.fail_after(5):
        async with WorkerPool(session_manager=manager) as pool:
            session = manager.create_session("request")
            await pool.enqueue(background, session)
            await pool.join()
            assert not session.ended
            assert ended == []
            await manager.release(session, "request")
    assert ended == [session]
    assert session.data == {"done": True}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _inactive(kind: str, manager: SessionManager, clock: FakeClock) -> Session:
    if kind == "ended":
        session = manager.create_session("request")
        await manager.end_session(session)
    elif kind == "unknown":
        session = SessionManager().create_session("elsewhere")
    else:
        session = manager.create_session("request", duration=5)
        clock.now += 10
    return session


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ended", "unknown", "expired"])
async def test_an_inactive_parent_gives_a_new_session_and_a_warning(
    kind: str, workpool_logs: pytest.LogCaptureFixture
) -> None:
    """An ended, unknown or expired parent is logged as a warning; the item still runs
    in a session of its own."""
    clock = FakeClock()
    manager = SessionManager(clock=clock)
    used: list[Session] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        used.append(scope.session)

    with anyio.fail_after(5):
        async with WorkerPool(session_manager=manager) as pool:
            parent = await _inactive(kind, manager, clock)
            item = await pool.enqueue(work, parent)
            await pool.join()
    assert item.state is ItemState.SUCCEEDED
    (session,) = used
    assert session is not parent
    assert session.ended
    warnings = [r for r in workpool_logs.records if r.levelno == logging.WARNING]
    assert any(str(parent.id) in r.getMessage() for r in warnings)


@pytest.mark.anyio
async def test_a_failing_scope_factory_fails_the_item_not_the_consumer(
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """A scope factory that raises fails (and dead-letters) that item; the consumer
    lives on and runs the next one."""
    calls = 0
    dead: list[tuple[WorkItem, BaseException]] = []
    ran: list[int] = []

    def factory() -> svcs.Container:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise LookupError("no database")
        return svcs.Container(svcs.Registry())

    async def work(scope: Scope, stopping: StopToken) -> None:
        ran.append(scope.attempt)

    with anyio.fail_after(5):
        async with WorkerPool(
            consumers=1,
            scope_factory=factory,
            on_dead_letter=lambda item, exc: dead.append((item, exc)),
        ) as pool:
            first = await pool.enqueue(work)
            second = await pool.enqueue(work)
            await pool.join()
    assert first.state is ItemState.FAILED
    assert second.state is ItemState.SUCCEEDED
    assert ran == [1]
    ((item, exc),) = dead
    assert item is first
    assert isinstance(exc, LookupError)
    stats = pool.stats()
    assert (stats.failed, stats.succeeded, stats.dead_lettered) == (1, 1, 1)
    assert len(pool.session_manager) == 0
    assert any("no database" in (r.exc_text or "") for r in workpool_logs.records)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_failing_scope_cleanup_is_logged_and_the_item_still_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A scoped service whose cleanup raises is logged; the item counts, the consumer goes on."""

    def connect() -> Iterator[Connection]:
        yield Connection()
        raise OSError("close failed")

    registry = svcs.Registry()
    registry.register_factory(Connection, connect)
    ran: list[int] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        scope.get(Connection)
        ran.append(1)

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, registry=registry) as pool:
            await pool.enqueue(work)
            await pool.enqueue(work)
            await pool.join()
    assert ran == [1, 1]
    assert pool.stats().succeeded == 2
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]
    assert len(failures) == 2
    assert all(isinstance(r.exc_info and r.exc_info[1], OSError) for r in failures)


@pytest.mark.anyio
async def test_expired_sessions_are_swept_while_the_pool_runs() -> None:
    """The pool's sweeper ends expired sessions nobody holds, every cleanup_interval."""
    clock = FakeClock()
    swept = anyio.Event()
    ended: list[Session] = []

    def on_end(session: Session) -> None:
        ended.append(session)
        swept.set()

    manager = SessionManager(default_duration=60, on_end=on_end, clock=clock)
    with anyio.fail_after(5):
        async with WorkerPool(session_manager=manager, cleanup_interval=0.01):
            held = manager.create_session("request", duration=5)
            idle = manager.create_session(duration=5)
            fresh = manager.create_session(duration=50)
            clock.now += 10
            await swept.wait()
            assert ended == [idle]
            assert not held.ended
            assert not fresh.ended
            assert len(manager) == 2


@pytest.mark.anyio
async def test_ten_thousand_items_leave_no_session_behind() -> None:
    """After 10,000 items (half of them reading their session), no session is live."""
    manager = SessionManager()
    ended = 0

    def on_end(session: Session) -> None:
        nonlocal ended
        ended += 1

    manager.add_on_end(on_end)

    async def noop(scope: Scope, stopping: StopToken) -> None:
        pass

    async def reads_session(scope: Scope, stopping: StopToken) -> None:
        assert scope.session_id is not None
        scope.session.data["x"] = 1

    with anyio.fail_after(30):
        async with WorkerPool(consumers=4, capacity=10_000, session_manager=manager) as pool:
            for i in range(10_000):
                pool.enqueue_nowait(reads_session if i % 2 else noop)
            await pool.join()
            assert len(manager) == 0
    assert pool.stats().succeeded == 10_000
    assert ended == 10_000  # on_end sees every item's session, read or not
    assert len(manager) == 0


@pytest.mark.anyio
async def test_a_container_whose_scope_cannot_be_made_is_still_closed() -> None:
    """When the parent session is ended by force between attempts, the next attempt's
    scope cannot join it; the container the factory made for it is closed anyway."""
    CountingContainer.instances = []
    manager = SessionManager()
    dead: list[BaseException] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        if scope.attempt == 1:
            await manager.end_session(scope.session)
            raise ValueError("first attempt")

    with anyio.fail_after(5):
        async with WorkerPool(
            scope_factory=CountingContainer,
            session_manager=manager,
            on_dead_letter=lambda item, exc: dead.append(exc),
        ) as pool:
            session = manager.create_session("request")
            item = await pool.enqueue(work, session, retry=RetryPolicy(stop=stop_after_attempt(3)))
            await pool.join()
    assert item.state is ItemState.FAILED
    assert len(dead) == 1
    assert len(CountingContainer.instances) == 3
    assert [c.closed for c in CountingContainer.instances] == [1, 1, 1]
    assert_accounted(pool)
