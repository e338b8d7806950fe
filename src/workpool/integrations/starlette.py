"""Starlette and FastAPI: a pool that lives with the app, and a session per request.

Install with ``pip install 'workpool[starlette]'``::

    from workpool.integrations.starlette import (
        SessionMiddleware, enqueue_for_request, lifespan,
    )

    app = Starlette(
        routes=[Route("/orders", place_order, methods=["POST"])],
        lifespan=lifespan(),                      # pool from settings, drained on shutdown
        middleware=[Middleware(SessionMiddleware)],  # a session per request
    )

    async def place_order(request):
        order = await request.json()
        await enqueue_for_request(request, partial(send_confirmation, order["id"]))
        return JSONResponse({"status": "accepted"}, status_code=202)

The request and its background work share the request's session (the .NET
``SessionMiddleware``): the request's scope joins it and leaves it when the
response is done; work queued with `enqueue_for_request` holds it from the moment
it is queued until it has run; the session ends when the last of them leaves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, final
from uuid import UUID, uuid4

import anyio

try:
    from starlette.datastructures import Headers, MutableHeaders

    # At run time: FastAPI reads the dependencies' annotations to inject the request.
    from starlette.requests import HTTPConnection, Request  # noqa: TC002
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "workpool.integrations.starlette needs Starlette; install it with "
        "pip install 'workpool[starlette]'"
    ) from exc

from .. import PoolSettings, Session, WorkerPool, WorkItem

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .. import RetryPolicy, Work

__all__ = [
    "PoolLifespan",
    "RequestEnqueuer",
    "SessionMiddleware",
    "enqueue_for_request",
    "get_enqueuer",
    "get_pool",
    "get_scope_id",
    "get_session",
    "lifespan",
]

logger = logging.getLogger("workpool.integrations.starlette")

#: Where the middleware puts the pool, the request's session and its scope id.
POOL_KEY: Final = "workpool.pool"
SESSION_KEY: Final = "workpool.session"
SCOPE_ID_KEY: Final = "workpool.scope_id"

PoolSource = WorkerPool | Callable[[], WorkerPool] | None


@final
class PoolLifespan:
    """Runs a pool for as long as the app runs: Starlette's and FastAPI's ``lifespan=``.

    At startup it builds the pool (``WorkerPool.from_settings()`` unless told
    otherwise), starts it and puts it on ``app.state`` (as ``app.state.workpool``);
    at shutdown it drains the pool within the deadline and logs the `DrainReport`
    (also readable afterwards as ``app.state.workpool.report``).

    It composes with a lifespan of your own::

        workpool_lifespan = lifespan()

        @asynccontextmanager
        async def app_lifespan(app):
            async with database(), workpool_lifespan(app):
                yield

    Args:
        pool: a function returning a new `WorkerPool` (called at each startup), a
            pool (which can run only once: pass a function for apps started more
            than once, as tests do), or ``None`` to build one from *settings*.
        settings: the `PoolSettings` for the default pool; default ``PoolSettings()``
            (environment, ``.env``, the TOML file).
        deadline: seconds the drain may take; default the pool's
            ``shutdown_deadline`` (``WORKPOOL_SHUTDOWN_DEADLINE``).
        state_key: the attribute of ``app.state`` that holds the pool.
    """

    __slots__ = ("_deadline", "_pool", "_settings", "state_key")

    def __init__(
        self,
        pool: PoolSource = None,
        *,
        settings: PoolSettings | None = None,
        deadline: float | None = None,
        state_key: str = "workpool",
    ) -> None:
        if pool is not None and not isinstance(pool, WorkerPool) and not callable(pool):
            raise TypeError(
                f"pool must be a WorkerPool, a function returning one, or None, got {pool!r}"
            )
        if pool is not None and settings is not None:
            raise ValueError("pass pool or settings, not both: settings build the default pool")
        if settings is not None and not isinstance(settings, PoolSettings):
            raise TypeError(f"settings must be a PoolSettings, got {settings!r}")
        if deadline is not None and (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not (deadline >= 0 and math.isfinite(deadline))
        ):
            raise ValueError(f"deadline must be zero or more seconds, got {deadline!r}")
        if not isinstance(state_key, str) or not state_key.isidentifier():
            raise ValueError(f"state_key must be an identifier, got {state_key!r}")
        self._pool = pool
        self._settings = settings
        self._deadline = deadline
        self.state_key = state_key

    def _make_pool(self) -> WorkerPool:
        source = self._pool
        if source is None:
            return WorkerPool.from_settings(self._settings)
        if isinstance(source, WorkerPool):
            return source
        pool = source()
        if not isinstance(pool, WorkerPool):
            raise TypeError(f"the pool factory must return a WorkerPool, got {pool!r}")
        return pool

    def __call__(self, app: object) -> AbstractAsyncContextManager[None]:
        """The lifespan context of *app*."""
        return self._run(app)

    @asynccontextmanager
    async def _run(self, app: object) -> AsyncIterator[None]:
        pool = self._make_pool()
        state = getattr(app, "state", None)
        async with pool:
            if state is not None:
                setattr(state, self.state_key, pool)
            try:
                yield
            finally:
                report = await pool.shutdown(self._deadline)
                logger.info(
                    "workpool drained with the app in %.3f s: %d succeeded, %d failed, "
                    "%d cancelled, %d abandoned",
                    report.elapsed,
                    report.succeeded,
                    report.failed,
                    len(report.cancelled),
                    len(report.abandoned),
                )


def lifespan(
    pool: PoolSource = None,
    *,
    settings: PoolSettings | None = None,
    deadline: float | None = None,
    state_key: str = "workpool",
) -> PoolLifespan:
    """A lifespan that runs a pool with the app; see `PoolLifespan`.

    ::

        app = FastAPI(lifespan=lifespan())                    # from settings
        app = FastAPI(lifespan=lifespan(lambda: WorkerPool(consumers=8)))
    """
    return PoolLifespan(pool, settings=settings, deadline=deadline, state_key=state_key)


def _find_pool(scope: Scope, state_key: str) -> WorkerPool | None:
    pool = scope.get(POOL_KEY)
    if isinstance(pool, WorkerPool):
        return pool
    app_state = getattr(scope.get("app"), "state", None)
    pool = getattr(app_state, state_key, None)
    if isinstance(pool, WorkerPool):
        return pool
    lifespan_state = scope.get("state")
    if isinstance(lifespan_state, dict):
        pool = lifespan_state.get(state_key)
        if isinstance(pool, WorkerPool):
            return pool
    return None


_NO_POOL = (
    "no workpool pool for this request: run the app with "
    "lifespan=workpool.integrations.starlette.lifespan(), or pass pool= to SessionMiddleware"
)


@final
class SessionMiddleware:
    """Gives each HTTP request a scope id and a session from the pool's `SessionManager`.

    A pure ASGI middleware (the .NET ``SessionMiddleware``): the request's scope
    joins a session (a new one, or with *session_header* the live one the client
    names) and leaves it when the response is done; the session ends when its last
    holder, the request or a background item, leaves. Endpoints read it with
    `get_session` and queue work in it with `enqueue_for_request`. Lifespan and
    websocket connections pass through untouched.

    Args:
        app: the ASGI app to wrap.
        pool: the pool whose sessions to use; default the one `lifespan` put on
            ``app.state``.
        session_header: a header (e.g. ``"x-session-id"``) naming a live session
            for the request to join; the response carries the session's id in it.
            ``None`` (default): each request gets a new session.
        session_duration: seconds a new session lives after its last use; ``None``
            (default) ends it as soon as its last holder leaves.
        state_key: the attribute of ``app.state`` that holds the pool.
        cleanup_grace: seconds the session's release (and its ``on_end`` hooks)
            may take when the request is cancelled, e.g. by a client disconnect.
    """

    __slots__ = (
        "_cleanup_grace",
        "_duration",
        "_header",
        "_pool",
        "_state_key",
        "app",
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        pool: WorkerPool | None = None,
        session_header: str | None = None,
        session_duration: float | None = None,
        state_key: str = "workpool",
        cleanup_grace: float = 5.0,
    ) -> None:
        if pool is not None and not isinstance(pool, WorkerPool):
            raise TypeError(f"pool must be a WorkerPool or None, got {pool!r}")
        if session_header is not None and (
            not isinstance(session_header, str) or not session_header.strip()
        ):
            raise ValueError(f"session_header must be a header name, got {session_header!r}")
        if session_duration is not None and (
            isinstance(session_duration, bool)
            or not isinstance(session_duration, int | float)
            or not (session_duration > 0 and math.isfinite(session_duration))
        ):
            raise ValueError(
                f"session_duration must be a positive number of seconds, got {session_duration!r}"
            )
        if isinstance(cleanup_grace, bool) or not (
            isinstance(cleanup_grace, int | float) and cleanup_grace > 0
        ):
            raise ValueError(
                f"cleanup_grace must be a positive number of seconds, got {cleanup_grace!r}"
            )
        self.app = app
        self._pool = pool
        self._header = session_header.strip().lower() if session_header else None
        self._duration = session_duration
        self._state_key = state_key
        self._cleanup_grace = float(cleanup_grace)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pool = self._pool or _find_pool(scope, self._state_key)
        if pool is None:
            raise RuntimeError(_NO_POOL)
        manager = pool.session_manager
        scope_id = uuid4()
        joined: Session | None = None
        if self._header is not None:
            named = Headers(scope=scope).get(self._header)
            if named is not None:
                joined = manager.get(named.strip())
                if joined is not None and manager.is_active(joined):
                    manager.add_scope(joined, scope_id)
                else:
                    joined = None
        session = joined or manager.create_session(scope_id, self._duration)
        scope[POOL_KEY] = pool
        scope[SESSION_KEY] = session
        scope[SCOPE_ID_KEY] = scope_id
        header = self._header
        held = True

        async def leave() -> None:
            nonlocal held
            if not held:
                return
            held = False
            with anyio.move_on_after(self._cleanup_grace, shield=True):
                try:
                    await manager.release(session, scope_id)
                except Exception:
                    logger.exception(
                        "releasing the session %s of request scope %s failed",
                        session.id,
                        scope_id,
                        extra={"session_id": session.id, "scope_id": scope_id},
                    )

        async def send_and_leave(message: Message) -> None:
            kind = message["type"]
            if header is not None and kind == "http.response.start":
                MutableHeaders(scope=message).append(header, str(session.id))
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                await leave()

        try:
            await self.app(scope, receive, send_and_leave)
        finally:
            await leave()


def get_pool(conn: HTTPConnection) -> WorkerPool:
    """The app's pool; a FastAPI dependency too (``Depends(get_pool)``).

    Raises:
        RuntimeError: no pool runs with the app.
    """
    pool = _find_pool(conn.scope, "workpool")
    if pool is None:
        raise RuntimeError(_NO_POOL)
    return pool


def get_session(request: Request) -> Session:
    """The request's session (from `SessionMiddleware`); a FastAPI dependency too.

    Raises:
        RuntimeError: `SessionMiddleware` is not installed.
    """
    session = request.scope.get(SESSION_KEY)
    if not isinstance(session, Session):
        raise RuntimeError(
            "this request has no workpool session: add "
            "Middleware(workpool.integrations.starlette.SessionMiddleware) to the app"
        )
    return session


def get_scope_id(request: Request) -> UUID:
    """The id of the request's scope, the holder of its session.

    Raises:
        RuntimeError: `SessionMiddleware` is not installed.
    """
    get_session(request)
    scope_id: UUID = request.scope[SCOPE_ID_KEY]
    return scope_id


@final
class RequestEnqueuer:
    """Queues background work in one request's session (see `get_enqueuer`).

    ::

        async def place_order(request):
            enqueue = get_enqueuer(request)
            await enqueue(partial(send_confirmation, order_id), retry=CONFIRMATION_RETRY)
    """

    __slots__ = ("pool", "session")

    def __init__(self, pool: WorkerPool, session: Session) -> None:
        self.pool = pool
        self.session = session

    async def __call__(
        self,
        work: Work,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> WorkItem:
        """Queue *work* with the request's session as its parent; see `WorkerPool.enqueue`.

        The channel makes the item a holder of the session from now until it has
        run (or is dropped), so the session outlives the response when the work
        runs later.
        """
        return await self.pool.enqueue(work, self.session, retry=retry, timeout=timeout, name=name)

    def nowait(
        self,
        work: Work,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> WorkItem:
        """As calling the enqueuer, but never waits (`WorkerPool.enqueue_nowait`)."""
        return self.pool.enqueue_nowait(work, self.session, retry=retry, timeout=timeout, name=name)

    def __repr__(self) -> str:
        return f"<RequestEnqueuer session={self.session.id}>"


def get_enqueuer(request: Request) -> RequestEnqueuer:
    """A `RequestEnqueuer` for the request's session; a FastAPI dependency too.

    Raises:
        RuntimeError: no pool, or `SessionMiddleware` is not installed.
    """
    return RequestEnqueuer(get_pool(request), get_session(request))


async def enqueue_for_request(
    request: Request,
    work: Work,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    name: str | None = None,
) -> WorkItem:
    """Queue *work* in the request's session, held for the item until it has run.

    Prefer this (or `get_enqueuer`) to ``pool.enqueue(work, session)`` in a
    request: the item then keeps the session alive even if it starts after the
    response is done.
    """
    return await get_enqueuer(request)(work, retry=retry, timeout=timeout, name=name)
