"""Reference-counted sessions shared by requests and their background work.

This module is also the one owner of an item's hold on its parent session: taken
when the channel accepts the item (`hold_parent`), passed to the running item
(`ItemSession.join_parent`), or released when the item will never run
(`release_parent`, `release_parent_nowait`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, final
from uuid import UUID

from ._checks import check_seconds
from ._hooks import Hook, Spawn, call_hook, try_spawn
from ._log import logger
from ._uuid import new_uuid4

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator

    from ._item import WorkItem

__all__ = [
    "ItemSession",
    "LazyItemSessions",
    "Session",
    "SessionManager",
    "end_hooks",
    "hold_parent",
    "release_parent",
    "release_parent_nowait",
]


@final
class Session:
    """A unit of shared state that a request and its background items hold together.

    A session is held by *scopes* (a request's, each running attempt's, and each
    item that joined it); it ends when its last holder leaves if it expires
    immediately, or once it has expired and nothing holds it. Sessions are made by
    a `SessionManager`, never directly.

    Attributes:
        id: a random UUID.
        scopes: ids of the scopes (and items) that hold the session now.
        created_at: ``time.monotonic()`` (or the manager's clock) at creation.
        last_accessed_at: when a scope last joined.
        duration: seconds of life after the last access; ``None`` means it expires
            immediately once its last holder leaves (as in the .NET original).
        user_id: free for the application (who the session belongs to).
        data: a dict for whatever the request and its background work share.
    """

    __slots__ = (
        "_default_duration",
        "_manager",
        "_scopes",
        "created_at",
        "data",
        "duration",
        "ended",
        "expires_at",
        "id",
        "last_accessed_at",
        "user_id",
    )

    def __init__(
        self,
        manager: SessionManager,
        session_id: UUID,
        now: float,
        duration: float | None,
        default_duration: float,
    ) -> None:
        self._manager = manager
        self._default_duration = default_duration
        self._scopes: set[Hashable] = set()
        self.id = session_id
        self.created_at = now
        self.last_accessed_at = now
        self.duration = duration
        self.expires_at = now + (duration if duration is not None else default_duration)
        self.ended = False
        self.user_id: Any = None
        self.data: dict[str, Any] = {}

    @property
    def scopes(self) -> frozenset[Hashable]:
        """The ids of the scopes holding the session now (a snapshot)."""
        return frozenset(self._scopes)

    @property
    def manager(self) -> SessionManager:
        """The `SessionManager` that made the session."""
        return self._manager

    @property
    def expires_immediately(self) -> bool:
        """True when the session ends as soon as its last holder leaves."""
        return self.duration is None

    def _touch(self, now: float) -> None:
        self.last_accessed_at = now
        span = self.duration if self.duration is not None else self._default_duration
        self.expires_at = now + span

    def __repr__(self) -> str:
        state = "ended" if self.ended else f"{len(self._scopes)} holders"
        return f"<Session {self.id} {state}>"


@final
class SessionManager:
    """Creates, tracks and ends sessions (the .NET ``ISessionManager``).

    Args:
        default_duration: seconds a session lives after its last access when it
            was created without a duration (for its expiry deadline).
        on_end: called once with each session when it ends, sync or async: the
            place to persist ``session.data``. Errors are logged and swallowed.
        clock: the time source, ``time.monotonic`` by default.

    Raises:
        ValueError: for a default duration that is not a positive number.
    """

    def __init__(
        self,
        default_duration: float = 900.0,
        *,
        on_end: Hook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_seconds(default_duration, "default_duration")
        self.default_duration = float(default_duration)
        self._on_end: list[Hook] = [on_end] if on_end is not None else []
        self._clock = clock
        self._sessions: dict[UUID, Session] = {}

    def add_on_end(self, hook: Hook) -> None:
        """Register one more hook called when a session ends."""
        self._on_end.append(hook)

    def __len__(self) -> int:
        """How many sessions are live (created and not ended)."""
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __repr__(self) -> str:
        return f"<SessionManager {len(self._sessions)} live>"

    def create_session(
        self, scope_id: Hashable | None = None, duration: float | None = None
    ) -> Session:
        """Create a session, held by *scope_id* if given.

        Args:
            scope_id: the id of the first holder (a request's scope, say).
            duration: seconds the session lives after its last access; ``None`` ends
                it as soon as its last holder leaves.
        """
        if duration is not None:
            check_seconds(duration, "duration")
            duration = float(duration)
        session = Session(self, new_uuid4(), self._clock(), duration, self.default_duration)
        if scope_id is not None:
            session._scopes.add(scope_id)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: UUID | str) -> Session | None:
        """The live session with that id, or ``None``."""
        if isinstance(session_id, str):
            try:
                session_id = UUID(session_id)
            except ValueError:
                return None
        return self._sessions.get(session_id)

    def is_active(self, session: Session) -> bool:
        """Known to this manager, not ended, and not expired."""
        return (
            not session.ended
            and self._sessions.get(session.id) is session
            and self._clock() < session.expires_at
        )

    def add_scope(self, session: Session, scope_id: Hashable) -> None:
        """Attach a holder to the session and refresh its expiry.

        Raises:
            ValueError: the session has ended.
        """
        if session.ended:
            raise ValueError(f"session {session.id} has ended; create a new one")
        session._scopes.add(scope_id)
        session._touch(self._clock())

    def remove_scope(self, session: Session, scope_id: Hashable) -> None:
        """Detach a holder (no effect if it does not hold the session)."""
        session._scopes.discard(scope_id)

    async def release(self, session: Session, scope_id: Hashable) -> None:
        """Detach a holder, and end the session if that was the last one and it
        expires immediately or has expired."""
        session._scopes.discard(scope_id)
        if (
            not session._scopes
            and not session.ended
            and (session.duration is None or self._clock() >= session.expires_at)
        ):
            await self.end_session(session)

    async def end_session(self, session: Session) -> None:
        """End the session and run the ``on_end`` hooks once. Idempotent."""
        if session.ended:
            return
        session.ended = True
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        session._scopes.clear()
        for hook in self._on_end:
            await call_hook(hook, "session on_end", session)

    async def sweep_expired(self) -> int:
        """End every expired session that no scope holds; return how many."""
        now = self._clock()
        # list() copies in one step: a sync item's thread may create a session (its
        # log records read scope.session_id) while this runs on the loop's thread.
        live = list(self._sessions.values())
        expired = [s for s in live if not s._scopes and now >= s.expires_at]
        swept = 0
        for session in expired:
            # An earlier on_end may have yielded: a scope may have joined meanwhile.
            if session._scopes or session.ended or self._clock() < session.expires_at:
                continue
            await self.end_session(session)
            swept += 1
        if swept:
            logger.debug("swept %d expired sessions", swept)
        return swept


def end_hooks(manager: SessionManager) -> list[Hook]:
    """The manager's ``on_end`` hooks, the live list: while it is empty nobody can
    tell whether an item had a session of its own, so the item runner makes one
    only on first use; with a hook, every item gets one (and its ``on_end`` call)."""
    return manager._on_end


# -- a queued item's hold on its parent session ------------------------------------
#
# A request typically enqueues work with its session and then leaves (releasing its
# own hold) before a consumer starts the item. So the item holds its parent session
# from the moment the channel accepts it, not from when it starts: otherwise a
# session that expires immediately would end in between, and the item would run in
# a new one. The hold is the item's id among the session's holders (through the
# session's own manager): the running item holds the session under the same id, so
# the hold passes to it as it joins, or is released when the item is dropped or
# abandoned. Nothing else is recorded, on the item or elsewhere.


def _holds(item: WorkItem, session: Session) -> bool:
    return item.id in session._scopes


def hold_parent(item: WorkItem) -> None:
    """Hold the item's parent session from acceptance, if it is active."""
    session = item.parent_session
    if session is None:
        return
    manager = session._manager
    if manager.is_active(session):
        manager.add_scope(session, item.id)


async def release_parent(item: WorkItem) -> None:
    """Release a hold taken by `hold_parent` (the item will not run); no effect
    without one."""
    session = item.parent_session
    if session is None or not _holds(item, session):
        return
    await session._manager.release(session, item.id)


def release_parent_nowait(item: WorkItem, spawn: Spawn | None) -> None:
    """`release_parent` from sync code: ending the session (its hooks) runs via *spawn*.

    With nothing to run the hooks, the session is left to the sweeper, which ends it
    once it expires.
    """
    session = item.parent_session
    if session is None or not _holds(item, session):
        return
    session._scopes.discard(item.id)
    if session._scopes or session.ended:
        return

    async def release() -> None:
        await session._manager.release(session, item.id)

    if try_spawn(spawn, release, f"the release of session {session.id}"):
        return
    logger.info(
        "session %s is left to the sweeper: its last holder was dropped from sync code "
        "with no running pool to end it",
        session.id,
    )


@final
class ItemSession:
    """One item's hold on its session, shared by all of its attempts.

    With a live parent session the item joins it at once (`join_parent`). Otherwise
    the item's own session is made the first time anything reads it
    (``scope.session``, ``scope.session_id``, a log record), since most background
    work never does; but at once when the manager has ``on_end`` hooks, which must
    see every item's session end (`open`). ``held`` tells whether there is a
    session to release.
    """

    __slots__ = ("failed_scope_id", "held", "item", "manager", "session")

    def __init__(self, item: WorkItem, manager: SessionManager) -> None:
        self.item = item
        self.manager = manager
        self.session: Session | None = None
        self.held = False
        self.failed_scope_id: UUID | None = None
        """The scope id of the item's last failed attempt, for its log records."""

    def join(self, session: Session) -> None:
        """Hold *session* for the item (its parent), through the session's own manager."""
        self.manager = session._manager
        self.manager.add_scope(session, self.item.id)
        self.session = session
        self.held = True

    async def join_parent(self) -> Exception | None:
        """Join the item's parent session, taking over the hold the item has had
        since the channel accepted it.

        An inactive parent (ended, expired, or another manager's) is logged as a
        warning and the item runs in a new session. Returns the exception that
        prevented joining (logged), or ``None``.
        """
        item = self.item
        parent = item.parent_session
        if parent is None:
            return None
        failure: Exception | None = None
        held = _holds(item, parent)
        try:
            # Held since the channel accepted the item (hold_parent): still the
            # request's session unless someone ended it meanwhile.
            if (
                not parent.ended
                and parent._manager is self.manager
                and (held or self.manager.is_active(parent))
            ):
                self.join(parent)  # under the item's id: the hold passes to it
            else:
                logger.warning(
                    "parent session %s of %s is not active (ended, expired or unknown); "
                    "the item runs in a new session",
                    parent.id,
                    item.name,
                    extra={"work_name": item.name, "session_id": parent.id},
                )
        except Exception as exc:
            logger.exception(
                "could not join session %s for %s",
                parent.id,
                item.name,
                extra={"work_name": item.name, "session_id": parent.id},
            )
            failure = exc
        if held and not self.held:  # a session of another manager: not joined
            await release_parent(item)
        return failure

    async def open(self, observed: bool) -> Exception | None:
        """Join the item's parent session, if any (`join_parent`); then, when
        *observed* (the manager has ``on_end`` hooks), make the item's own session
        at once if it has none, so that every item's session ends with its
        ``on_end`` call. Returns the exception that prevented it (logged), or ``None``.
        """
        if self.item.parent_session is not None:
            failure = await self.join_parent()
            if failure is not None:
                return failure
        if observed and self.session is None:
            try:
                self.materialize()
            except Exception as exc:
                logger.exception(
                    "could not create the session of %s",
                    self.item.name,
                    extra={"work_name": self.item.name},
                )
                return exc
        return None

    def materialize(self) -> Session:
        """The item's session, created (and held by the item) on first use."""
        session = self.session
        if session is None:
            session = self.session = self.manager.create_session(self.item.id)
            self.held = True
        return session


@final
class LazyItemSessions:
    """Stands in for the `ItemSession` of each item that has no session yet (no
    parent, no ``on_end`` hooks): one per item runner, so that an item whose work
    never reads its session makes no per-item object for it.

    It reads as a slot without a session (``session`` is ``None``, ``held`` is
    false). The first read of ``scope.session`` calls `make`, which makes the item's
    real `ItemSession` and keeps it in `made` until the runner collects it with
    `take` (after a failed attempt, and when the item ends).
    """

    __slots__ = ("made", "manager")

    session: ClassVar[None] = None
    held: ClassVar[bool] = False

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.made: dict[WorkItem, ItemSession] = {}
        """The slots made for items still running, by item."""

    def make(self, item: WorkItem) -> ItemSession:
        """The item's real slot, made now (its session is then made by the caller)."""
        slot = self.made.get(item)
        if slot is None:
            slot = self.made[item] = ItemSession(item, self.manager)
        return slot

    def take(self, item: WorkItem, slot: ItemSession | LazyItemSessions) -> ItemSession:
        """*slot* if it is a real one; else the one made for *item* (handed over: no
        longer kept here), or a new one."""
        if type(slot) is ItemSession:
            return slot
        made = self.made.pop(item, None)
        return made if made is not None else ItemSession(item, self.manager)
