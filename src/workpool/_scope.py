"""Per-attempt DI scopes (svcs by default) and the item's share of a session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final, runtime_checkable

from ._item import new_uuid4
from ._svcs import svcs

if TYPE_CHECKING:
    from uuid import UUID

    from ._item import WorkItem
    from ._session import Session, SessionManager

__all__ = ["ItemSession", "Scope", "ScopeFactory", "ServiceContainer", "svcs_scope_factory"]

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
class ItemSession:
    """One item's hold on its session, shared by all of its attempts.

    With a live parent session the item joins it at once. Otherwise the item's own
    session is made the first time anything reads it (``scope.session``,
    ``scope.session_id``, a log record), since most background work never does.
    """

    __slots__ = ("_joined", "item", "manager", "session")

    def __init__(self, item: WorkItem, manager: SessionManager) -> None:
        self.item = item
        self.manager = manager
        self.session: Session | None = None
        self._joined = False

    def join(self, session: Session) -> None:
        """Hold *session* for the item (its parent), through the session's own manager."""
        self.manager = session._manager
        self.manager.add_scope(session, self.item.id)
        self.session = session
        self._joined = True

    def materialize(self) -> Session:
        """The item's session, created (and held by the item) on first use."""
        session = self.session
        if session is None:
            session = self.session = self.manager.create_session(self.item.id)
            self._joined = True
        return session

    @property
    def held(self) -> bool:
        """Whether the item holds a session that must be released."""
        return self._joined


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
        slot: ItemSession | None,
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

    def _close_sync(self) -> None:
        """Close a scope that never made a container: nothing to await."""
        self._closed = True
        if self._attached:
            self._detach()

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            slot = self._slot
            if slot is not None and slot.session is not None:
                slot.manager.remove_scope(slot.session, self.id)

    def __repr__(self) -> str:
        return f"<Scope {self.item.name} attempt={self.attempt}{' closed' if self._closed else ''}>"
