"""Per-attempt DI scopes (svcs by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final, runtime_checkable

from ._session import LazyItemSessions
from ._svcs import svcs
from ._uuid import new_uuid4

if TYPE_CHECKING:
    from uuid import UUID

    from ._item import WorkItem
    from ._session import ItemSession, Session

__all__ = [
    "Scope",
    "ScopeFactory",
    "ServiceContainer",
    "close_scope_nowait",
    "scope_log_ids",
    "svcs_scope_factory",
]

T = TypeVar("T")


@runtime_checkable
class ServiceContainer(Protocol):
    """What a scope factory returns: ``svcs.Container`` fits, so does an adapter."""

    def get(self, svc_type: Any, /) -> Any: ...

    async def aget(self, svc_type: Any, /) -> Any: ...

    async def aclose(self) -> Any: ...


@runtime_checkable
class ScopeFactory(Protocol):
    """Makes a fresh `ServiceContainer` for each attempt (``IServiceScopeFactory``).

    Any zero-argument callable fits: ``lambda: svcs.Container(registry)``, or a
    function returning an adapter over another DI library. A custom factory is
    called when each attempt starts; its errors fail that attempt.
    """

    def __call__(self) -> ServiceContainer: ...


def svcs_scope_factory(registry: svcs.Registry) -> ScopeFactory:
    """The default factory: an ``svcs.Container`` over *registry* per attempt."""

    def factory() -> ServiceContainer:
        return svcs.Container(registry)

    return factory


@final
class Scope:
    """The DI scope of one attempt of one work item (the .NET ``IScopeContainer``).

    Services come from a fresh container per attempt, made on first use and closed
    (cleanups in reverse order) when the attempt ends. The scope holds the item's
    session for as long as it is open.

    Attributes:
        item: the `WorkItem` being run.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
    """

    __slots__ = (
        "_attached",
        "_closed",
        "_container",
        "_factory",
        "_id",
        "_slot",
        "attempt",
        "item",
    )

    def __init__(
        self,
        item: WorkItem,
        attempt: int,
        slot: ItemSession | LazyItemSessions | None,
        factory: ScopeFactory | None,
        container: ServiceContainer | None = None,
    ) -> None:
        self.item = item
        self.attempt = attempt
        self._slot = slot
        self._factory = factory
        self._container = container
        self._id: UUID | None = None
        self._closed = False
        self._attached = False
        if slot is not None and slot.session is not None:
            slot.manager.add_scope(slot.session, self.id)
            self._attached = True

    @property
    def id(self) -> UUID:
        """A random UUID, made the first time it is read."""
        if self._id is None:
            self._id = new_uuid4()
        return self._id

    @property
    def session(self) -> Session:
        """The item's session: its parent's, or its own (made on first use).

        Raises:
            RuntimeError: the scope was made without a session manager, or it is
                closed and never had a session.
        """
        slot = self._slot
        if slot is None:
            raise RuntimeError("this scope has no session manager")
        session = slot.session
        if session is None:
            if self._closed:
                # The item may be finished and released: a session made now would
                # be held by it forever.
                raise RuntimeError("this scope is closed: its attempt has ended")
            if type(slot) is LazyItemSessions:
                slot = self._slot = slot.make(self.item)
            session = slot.materialize()
        if not self._attached and not self._closed:
            slot.manager.add_scope(session, self.id)
            self._attached = True
        return session

    @property
    def session_id(self) -> UUID | None:
        """The id of the item's `session` (``None`` without one, e.g. once closed)."""
        slot = self._slot
        if slot is None or (slot.session is None and self._closed):
            return None
        return self.session.id

    @property
    def container(self) -> ServiceContainer:
        """The attempt's service container, made on first use.

        Raises:
            RuntimeError: the scope is closed.
        """
        container = self._container
        if container is None:
            if self._closed:
                raise RuntimeError("this scope is closed: its attempt has ended")
            if self._factory is None:
                raise RuntimeError("this scope has no scope factory")
            container = self._container = self._factory()
        return container

    def get(self, svc_type: type[T], /) -> T:
        """The service of type *svc_type* from the scope's container (``svcs``'s ``get``)."""
        return self.container.get(svc_type)  # type: ignore[no-any-return]

    async def aget(self, svc_type: type[T], /) -> T:
        """The service of type *svc_type*, for async factories (``svcs``'s ``aget``)."""
        return await self.container.aget(svc_type)  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        """Whether the scope's attempt has ended and its cleanups ran."""
        return self._closed

    @property
    def needs_async_close(self) -> bool:
        """Whether closing has anything to await (a container was made)."""
        return self._container is not None

    async def aclose(self) -> None:
        """Run the container's cleanups (reverse order) and leave the session. Idempotent."""
        if self._closed:
            return
        self._closed = True
        container, self._container = self._container, None
        try:
            if container is not None:
                await container.aclose()
        except BaseException:
            # Cut off (cancelled past the shutdown grace): the cleanups not yet run
            # never will; the pool logs that, so svcs need not warn again at GC.
            if isinstance(container, svcs.Container):
                container._on_close.clear()
            raise
        finally:
            self._detach()

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            slot = self._slot
            if slot is not None and slot.session is not None:
                slot.manager.remove_scope(slot.session, self.id)

    def __repr__(self) -> str:
        return f"<Scope {self.item.name} attempt={self.attempt}{' closed' if self._closed else ''}>"


def close_scope_nowait(scope: Scope) -> bool:
    """Close *scope* at once if it never made a container (nothing to await), and
    say so; False: it needs ``await scope.aclose()``.

    A function of this module rather than a method: the item runner calls it once
    per attempt, and it reads the scope's internals.
    """
    if scope._container is not None:
        return False
    scope._closed = True
    if scope._attached:
        scope._detach()
    return True


def scope_log_ids(scope: Scope) -> dict[str, Any]:
    """The ``extra=`` of a log record about *scope*, without making its session."""
    slot = scope._slot
    session = slot.session if slot is not None else None
    return {
        "work_name": scope.item.name,
        "attempt": scope.attempt,
        "scope_id": scope.id,
        "session_id": session.id if session is not None else None,
    }
