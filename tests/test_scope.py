"""Scope: lazy svcs containers, cleanups, the item's session, current_scope, log context."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import svcs

from tests.helpers.services import CountingFactory
from workpool import (
    LogContextFilter,
    Scope,
    ScopeFactory,
    ServiceContainer,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
    WorkItem,
    current_scope,
)
from workpool._scope import svcs_scope_factory
from workpool._session import ItemSession

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.anyio


def field(record: logging.LogRecord, name: str) -> Any:
    """A field a filter added to *record*."""
    return record.__dict__[name]


async def noop(scope: Scope, stopping: StopToken) -> None:
    """A work function that does nothing."""


class Database:
    """A scoped service."""


class Cache:
    """Another scoped service, made by an async factory."""


@pytest.fixture
def registry() -> Iterator[svcs.Registry]:
    registry = svcs.Registry()
    yield registry
    registry.close()


@pytest.fixture
def manager() -> SessionManager:
    return SessionManager()


def make_scope(
    factory: ScopeFactory | None = None,
    manager: SessionManager | None = None,
    *,
    item: WorkItem | None = None,
    attempt: int = 1,
) -> tuple[Scope, ItemSession | None]:
    item = item or WorkItem(noop)
    slot = ItemSession(item, manager) if manager is not None else None
    return Scope(item, attempt, slot, factory), slot


class TestContainer:
    async def test_no_container_until_asked(self, registry: svcs.Registry) -> None:
        """A scope never asked for a service makes no container and needs no async close."""
        factory = CountingFactory(registry)
        scope, _ = make_scope(factory)
        assert not scope.needs_async_close
        await scope.aclose()
        assert factory.made == 0
        assert scope.closed

    async def test_get(self, registry: svcs.Registry) -> None:
        """get returns the registered service, one instance per scope."""
        registry.register_factory(Database, Database)
        factory = svcs_scope_factory(registry)
        scope, _ = make_scope(factory)
        other, _ = make_scope(factory)
        db = scope.get(Database)
        assert isinstance(db, Database)
        assert scope.get(Database) is db
        assert other.get(Database) is not db
        assert scope.needs_async_close
        await scope.aclose()
        await other.aclose()

    async def test_aget(self, registry: svcs.Registry) -> None:
        """aget returns services from async factories."""

        async def make_cache() -> Cache:
            await anyio.lowlevel.checkpoint()
            return Cache()

        registry.register_factory(Cache, make_cache)
        scope, _ = make_scope(svcs_scope_factory(registry))
        assert isinstance(await scope.aget(Cache), Cache)
        await scope.aclose()

    async def test_container_made_once(self, registry: svcs.Registry) -> None:
        """The container is made on first use and reused for the rest of the scope."""
        registry.register_factory(Database, Database)
        factory = CountingFactory(registry)
        scope, _ = make_scope(factory)
        scope.get(Database)
        scope.get(Database)
        assert scope.container is scope.container
        assert factory.made == 1
        await scope.aclose()

    async def test_cleanups_in_reverse_order(self, registry: svcs.Registry) -> None:
        """aclose runs the services' cleanups in reverse order, sync and async alike."""
        order: list[str] = []

        def make_db() -> Iterator[Database]:
            yield Database()
            order.append("db")

        async def make_cache() -> AsyncIterator[Cache]:
            yield Cache()
            await anyio.lowlevel.checkpoint()
            order.append("cache")

        registry.register_factory(Database, make_db)
        registry.register_factory(Cache, make_cache)
        scope, _ = make_scope(svcs_scope_factory(registry))
        scope.get(Database)
        await scope.aget(Cache)
        assert order == []
        await scope.aclose()
        assert order == ["cache", "db"]

    async def test_aclose_idempotent(self, registry: svcs.Registry) -> None:
        """A second aclose does nothing: cleanups run once."""
        closed: list[str] = []

        def make_db() -> Iterator[Database]:
            yield Database()
            closed.append("db")

        registry.register_factory(Database, make_db)
        scope, _ = make_scope(svcs_scope_factory(registry))
        scope.get(Database)
        await scope.aclose()
        await scope.aclose()
        assert closed == ["db"]

    async def test_get_after_close(self, registry: svcs.Registry) -> None:
        """get and aget on a closed scope raise RuntimeError."""
        registry.register_factory(Database, Database)
        scope, _ = make_scope(svcs_scope_factory(registry))
        scope.get(Database)
        await scope.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            scope.get(Database)
        with pytest.raises(RuntimeError, match="closed"):
            await scope.aget(Database)

    async def test_get_after_close_without_container(self, registry: svcs.Registry) -> None:
        """A scope closed before it made a container does not make one afterwards."""
        factory = CountingFactory(registry)
        scope, _ = make_scope(factory)
        await scope.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            scope.get(Database)
        assert factory.made == 0

    async def test_no_factory(self) -> None:
        """A scope made without a factory says so when asked for a service."""
        scope, _ = make_scope(None)
        with pytest.raises(RuntimeError, match="no scope factory"):
            scope.get(Database)

    async def test_custom_container(self) -> None:
        """Any container with get/aget/aclose plugs in through a ScopeFactory."""

        class Adapter:
            closed = False

            def get(self, svc_type: Any, /) -> Any:
                return svc_type()

            async def aget(self, svc_type: Any, /) -> Any:
                return svc_type()

            async def aclose(self) -> None:
                self.closed = True

        adapter = Adapter()

        def factory() -> ServiceContainer:
            return adapter

        assert isinstance(factory, ScopeFactory)
        assert isinstance(adapter, ServiceContainer)
        scope, _ = make_scope(factory)
        assert isinstance(scope.get(Database), Database)
        assert isinstance(await scope.aget(Cache), Cache)
        await scope.aclose()
        assert adapter.closed

    async def test_failing_cleanup_still_detaches(self, manager: SessionManager) -> None:
        """When the container's aclose raises, the scope still leaves the session."""

        class Broken:
            def get(self, svc_type: Any, /) -> Any:
                return svc_type()

            async def aget(self, svc_type: Any, /) -> Any:
                return svc_type()

            async def aclose(self) -> None:
                raise RuntimeError("cleanup broke")

        scope, _ = make_scope(Broken, manager)
        session = scope.session
        scope.get(Database)
        with pytest.raises(RuntimeError, match="cleanup broke"):
            await scope.aclose()
        assert scope.id not in session.scopes
        assert scope.closed


class TestAttributes:
    def test_ids(self) -> None:
        """A scope has a stable version-4 UUID id, its item and its 1-based attempt."""
        item = WorkItem(noop)
        scope, _ = make_scope(item=item, attempt=2)
        assert isinstance(scope.id, uuid.UUID)
        assert scope.id.version == 4
        assert scope.id == scope.id
        assert scope.item is item
        assert scope.attempt == 2
        assert "attempt=2" in repr(scope)

    def test_no_session_manager(self) -> None:
        """Without a session manager, session raises and session_id is None."""
        scope, _ = make_scope()
        assert scope.session_id is None
        with pytest.raises(RuntimeError, match="no session manager"):
            _ = scope.session


class TestSession:
    async def test_own_session_is_lazy(self, manager: SessionManager) -> None:
        """An item without a parent gets a session only when something reads it."""
        scope, slot = make_scope(None, manager)
        assert slot is not None
        assert len(manager) == 0
        assert not slot.held
        session = scope.session
        assert isinstance(session, Session)
        assert len(manager) == 1
        assert slot.held
        assert slot.session is session
        assert scope.session is session
        assert scope.session_id == session.id
        assert session.expires_immediately
        # held by the item (for all its attempts) and by this attempt's scope
        assert session.scopes == {scope.item.id, scope.id}
        await scope.aclose()

    async def test_session_never_read_costs_nothing(self, manager: SessionManager) -> None:
        """A scope whose session is never read creates none."""
        scope, slot = make_scope(None, manager)
        await scope.aclose()
        assert slot is not None
        assert not slot.held
        assert len(manager) == 0

    async def test_detaches_on_close(self, manager: SessionManager) -> None:
        """Closing the scope detaches it from the session; the item still holds it."""
        scope, slot = make_scope(None, manager)
        session = scope.session
        await scope.aclose()
        assert session.scopes == {scope.item.id}
        assert not session.ended
        assert slot is not None
        await manager.release(session, slot.item.id)
        assert session.ended
        assert len(manager) == 0

    async def test_attempts_share_item_session(self, manager: SessionManager) -> None:
        """A later attempt's scope attaches to the session made during an earlier one."""
        item = WorkItem(noop)
        slot = ItemSession(item, manager)
        first = Scope(item, 1, slot, None)
        session = first.session
        await first.aclose()
        second = Scope(item, 2, slot, None)
        assert session.scopes == {item.id, second.id}
        assert second.session is session
        await second.aclose()
        assert session.scopes == {item.id}

    async def test_joins_parent(self, manager: SessionManager) -> None:
        """An item that joined a parent session attaches each scope to it at once."""
        parent = manager.create_session("request")
        item = WorkItem(noop, parent)
        slot = ItemSession(item, manager)
        slot.join(parent)
        assert slot.held
        scope = Scope(item, 1, slot, None)
        assert parent.scopes == {"request", item.id, scope.id}
        assert scope.session is parent
        await scope.aclose()
        await manager.release(parent, item.id)
        assert not parent.ended  # the request still holds it
        await manager.release(parent, "request")
        assert parent.ended

    async def test_closed_scope_makes_no_session(self, manager: SessionManager) -> None:
        """Reading the session of a closed scope never creates one nobody would release."""
        scope, slot = make_scope(None, manager)
        await scope.aclose()
        assert scope.session_id is None
        with pytest.raises(RuntimeError, match="closed"):
            _ = scope.session
        assert len(manager) == 0
        assert slot is not None
        assert not slot.held

    async def test_closed_scope_keeps_session_it_had(self, manager: SessionManager) -> None:
        """A closed scope still reports the session it had, without reattaching."""
        scope, _ = make_scope(None, manager)
        session = scope.session
        await scope.aclose()
        assert scope.session is session
        assert scope.session_id == session.id
        assert scope.id not in session.scopes


class TestCurrentScope:
    def test_none_outside_items(self) -> None:
        """current_scope() is None outside a work item."""
        assert current_scope() is None

    async def test_none_in_async_code_outside_items(self) -> None:
        """current_scope() is None in async code that is not a work item."""
        assert current_scope() is None

    async def test_set_while_items_run(self) -> None:
        """current_scope() is the item's scope, in async work and in a sync work's thread."""
        seen: list[tuple[Scope | None, Scope, bool]] = []

        async def async_work(scope: Scope, stopping: StopToken) -> None:
            seen.append((current_scope(), scope, False))

        def sync_work(scope: Scope, stopping: StopToken) -> None:
            seen.append((current_scope(), scope, threading.current_thread() is main))

        main = threading.current_thread()
        with anyio.fail_after(10):
            async with WorkerPool(consumers=1) as pool:
                await pool.enqueue(async_work)
                await pool.enqueue(sync_work)
                await pool.join()
                assert current_scope() is None
        assert len(seen) == 2
        for current, scope, on_main in seen:
            assert current is scope
            assert not on_main
        assert seen[0][1] is not seen[1][1]


class TestLogContextFilter:
    def test_outside_item(self) -> None:
        """Outside an item the filter adds the four fields as None."""
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
        assert LogContextFilter().filter(record)
        assert field(record, "scope_id") is None
        assert field(record, "session_id") is None
        assert field(record, "work_name") is None
        assert field(record, "attempt") is None

    def test_keeps_explicit_fields(self) -> None:
        """Outside an item, fields passed with extra= are kept."""
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
        record.__dict__["scope_id"] = "given"
        LogContextFilter().filter(record)
        assert field(record, "scope_id") == "given"

    async def test_inside_item(self) -> None:
        """Records logged by a work item carry its scope, session, name and attempt."""
        records: list[logging.LogRecord] = []
        seen: list[tuple[uuid.UUID, uuid.UUID | None]] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        handler = Keep()
        handler.addFilter(LogContextFilter())
        app_logger = logging.getLogger("test_scope.app")
        app_logger.addHandler(handler)
        app_logger.setLevel(logging.INFO)
        app_logger.propagate = False

        async def work(scope: Scope, stopping: StopToken) -> None:
            seen.append((scope.id, scope.session_id))
            app_logger.info("from the item")

        try:
            with anyio.fail_after(10):
                async with WorkerPool(consumers=1) as pool:
                    await pool.enqueue(work, name="tagged")
                    await pool.join()
            app_logger.info("after")
        finally:
            app_logger.removeHandler(handler)
            app_logger.propagate = True
        inside, after = records
        assert (field(inside, "scope_id"), field(inside, "session_id")) == seen[0]
        assert field(inside, "session_id") is not None
        assert field(inside, "work_name") == "tagged"
        assert field(inside, "attempt") == 1
        assert field(after, "scope_id") is None
        assert field(after, "work_name") is None
