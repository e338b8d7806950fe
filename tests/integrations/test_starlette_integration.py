"""workpool.integrations.starlette: the lifespan, the session middleware, the helpers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workpool import FullMode, PoolSettings, Session, SessionManager, WorkerPool
from workpool.integrations.starlette import (
    SessionMiddleware,
    enqueue_for_request,
    get_pool,
    get_scope_id,
    get_session,
    lifespan,
)

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from workpool import Scope as WorkScope
    from workpool import StopToken

Endpoint = Callable[[Request], Any]


def make_app(
    endpoint: Endpoint,
    pool_factory: Callable[[], WorkerPool] | None = None,
    **middleware: Any,
) -> Starlette:
    return Starlette(
        routes=[Route("/", endpoint, methods=["GET", "POST"])],
        lifespan=lifespan(pool_factory),
        middleware=[Middleware(SessionMiddleware, **middleware)],
    )


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that calls it in-process."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            yield client


async def whoami(request: Request) -> Response:
    session = get_session(request)
    return JSONResponse(
        {
            "session": str(session.id),
            "scope": str(get_scope_id(request)),
            "live": len(session.scopes),
        }
    )


@pytest.mark.anyio
async def test_lifespan_runs_a_pool_from_settings_and_drains_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default lifespan builds the pool from WORKPOOL_* settings and drains it at shutdown."""
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "3")
    monkeypatch.setenv("WORKPOOL_SHUTDOWN_DEADLINE", "7")
    app = make_app(whoami)
    with anyio.fail_after(10):
        async with serve(app):
            pool = app.state.workpool
            assert isinstance(pool, WorkerPool)
            assert (pool.consumers, pool.shutdown_deadline) == (3, 7.0)
            assert pool.running
    assert not pool.running
    assert pool.report is not None
    assert pool.report.clean


@pytest.mark.anyio
async def test_lifespan_drain_finishes_queued_work_before_the_app_stops() -> None:
    """Work queued by requests still runs during the shutdown drain."""
    done: list[int] = []

    async def job(n: int, scope: WorkScope, stopping: StopToken) -> None:
        await stopping.wait()
        done.append(n)

    async def endpoint(request: Request) -> Response:
        for n in range(5):
            await get_pool(request).enqueue(partial(job, n))
        return Response(status_code=202)

    app = make_app(endpoint, lambda: WorkerPool(consumers=2))
    with anyio.fail_after(10):
        async with serve(app) as client:
            assert (await client.post("/")).status_code == 202
            assert done == []
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert app.state.workpool.report.succeeded == 5


@pytest.mark.anyio
async def test_lifespan_deadline_overrides_the_pool_setting() -> None:
    """lifespan(deadline=...) bounds the drain: unfinished work is reported, not waited on."""

    async def stuck(scope: WorkScope, stopping: StopToken) -> None:
        await anyio.sleep(60)

    async def endpoint(request: Request) -> Response:
        await get_pool(request).enqueue(stuck)
        return Response(status_code=202)

    app = Starlette(
        routes=[Route("/", endpoint, methods=["POST"])],
        lifespan=lifespan(lambda: WorkerPool(consumers=1, shutdown_deadline=60), deadline=0.1),
    )
    with anyio.fail_after(10):
        async with serve(app) as client:
            await client.post("/")
            await anyio.wait_all_tasks_blocked()
    report = app.state.workpool.report
    assert report.deadline_hit
    assert len(report.cancelled) == 1


@pytest.mark.anyio
async def test_each_request_gets_its_own_scope_and_session_ended_after_the_response() -> None:
    """Two requests: two scope ids, two sessions, each ended once its response is done."""
    ended: list[Session] = []
    app = make_app(whoami, lambda: WorkerPool(session_manager=SessionManager(on_end=ended.append)))
    with anyio.fail_after(10):
        async with serve(app) as client:
            first = (await client.get("/")).json()
            second = (await client.get("/")).json()
            manager = app.state.workpool.session_manager
            assert len(manager) == 0
    assert first["session"] != second["session"]
    assert first["scope"] != second["scope"]
    assert first["live"] == second["live"] == 1  # the request's scope held it
    assert [str(s.id) for s in ended] == [first["session"], second["session"]]


@pytest.mark.anyio
async def test_session_outlives_the_response_until_the_queued_item_has_run() -> None:
    """Work queued in the request's session keeps it alive after the response, in that session."""
    gate = anyio.Event()
    seen: list[tuple[Any, Any]] = []
    ended: list[Session] = []

    async def blocker(scope: WorkScope, stopping: StopToken) -> None:
        await gate.wait()

    async def confirm(scope: WorkScope, stopping: StopToken) -> None:
        seen.append((scope.session.id, scope.session.data.get("order")))

    async def endpoint(request: Request) -> Response:
        get_session(request).data["order"] = 42
        await enqueue_for_request(request, confirm)
        return JSONResponse({"session": str(get_session(request).id)})

    app = make_app(
        endpoint,
        lambda: WorkerPool(consumers=1, session_manager=SessionManager(on_end=ended.append)),
    )
    with anyio.fail_after(10):
        async with serve(app) as client:
            pool = app.state.workpool
            await pool.enqueue(blocker)  # the only consumer is busy: confirm must wait
            response = await client.post("/")
            session = pool.session_manager.get(response.json()["session"])
            assert session is not None
            assert not session.ended
            assert seen == []
            gate.set()
            await pool.join()
            assert seen == [(session.id, 42)]
            assert session.ended
            assert ended.count(session) == 1


@pytest.mark.anyio
async def test_dropped_item_releases_its_hold_on_the_session() -> None:
    """An item dropped from a full channel no longer holds the request's session."""
    gate = anyio.Event()
    ended: list[Session] = []

    async def blocker(scope: WorkScope, stopping: StopToken) -> None:
        await gate.wait()

    async def confirm(scope: WorkScope, stopping: StopToken) -> None:
        pass

    async def endpoint(request: Request) -> Response:
        await enqueue_for_request(request, confirm)
        return JSONResponse({"session": str(get_session(request).id)})

    app = make_app(
        endpoint,
        lambda: WorkerPool(
            consumers=1,
            capacity=1,
            full_mode=FullMode.DROP_OLDEST,
            session_manager=SessionManager(on_end=ended.append),
        ),
    )
    with anyio.fail_after(10):
        async with serve(app) as client:
            pool = app.state.workpool
            await pool.enqueue(blocker)
            await anyio.wait_all_tasks_blocked()  # blocker runs; the channel is empty
            first = (await client.post("/")).json()["session"]
            await pool.enqueue(blocker)  # evicts the first request's item
            await anyio.wait_all_tasks_blocked()
            assert first in {str(s.id) for s in ended}
            gate.set()


@pytest.mark.anyio
async def test_session_header_joins_a_live_session_and_is_echoed() -> None:
    """With session_header, a request naming a live session joins it; the response names it."""
    app = make_app(whoami, session_header="X-Session-Id", session_duration=60)
    with anyio.fail_after(10):
        async with serve(app) as client:
            first = await client.get("/")
            sid = first.headers["x-session-id"]
            assert sid == first.json()["session"]
            again = await client.get("/", headers={"x-session-id": sid})
            assert again.json()["session"] == sid
            unknown = await client.get("/", headers={"x-session-id": "not-a-session"})
            assert unknown.json()["session"] != sid


@pytest.mark.anyio
async def test_the_request_session_is_released_when_the_endpoint_raises() -> None:
    """A failing endpoint still leaves its session: nothing stays live."""

    async def endpoint(request: Request) -> Response:
        get_session(request)
        raise LookupError("boom")

    app = make_app(endpoint, WorkerPool)
    with anyio.fail_after(10):
        async with serve(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                assert (await client.get("/")).status_code == 500
            assert len(app.state.workpool.session_manager) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
async def test_non_http_scopes_pass_through_untouched(kind: str) -> None:
    """Websocket and lifespan connections reach the app as they came, with no session."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    scope: Scope = {"type": kind, "path": "/ws"}
    # no pool anywhere: an http request would fail, these must not even look
    await SessionMiddleware(app)(scope, receive, send)
    assert seen == [{"type": kind, "path": "/ws"}]
    assert seen[0] is scope


@pytest.mark.anyio
async def test_a_request_without_a_pool_fails_with_a_clear_error() -> None:
    """The middleware names the fix when no pool runs with the app."""
    app = Starlette(
        routes=[Route("/", whoami)],
        middleware=[Middleware(SessionMiddleware)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        with pytest.raises(RuntimeError, match="lifespan"):
            await client.get("/")


@pytest.mark.anyio
async def test_helpers_without_the_middleware_name_it() -> None:
    """get_session without SessionMiddleware raises, naming the middleware to add."""

    async def endpoint(request: Request) -> Response:
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            get_session(request)
        return Response()

    app = Starlette(routes=[Route("/", endpoint)], lifespan=lifespan(WorkerPool))
    with anyio.fail_after(10):
        async with serve(app) as client:
            assert (await client.get("/")).status_code == 200


def test_bad_arguments_fail_at_construction() -> None:
    """Bad lifespan and middleware arguments raise at once, naming the argument."""
    with pytest.raises(TypeError, match="pool"):
        lifespan(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        lifespan(WorkerPool, settings=PoolSettings())
    with pytest.raises(ValueError, match="deadline"):
        lifespan(deadline=-1)
    with pytest.raises(ValueError, match="session_header"):
        SessionMiddleware(whoami, session_header=" ")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session_duration"):
        SessionMiddleware(whoami, session_duration=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("workpool.integrations.starlette", "starlette.requests", "workpool[starlette]"),
        ("workpool.integrations.fastapi", "fastapi", "workpool[fastapi]"),
    ],
)
def test_a_missing_extra_raises_import_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, module: str, missing: str, extra: str
) -> None:
    """Without the framework installed, the import fails saying what to pip install."""
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)


def test_importing_workpool_imports_no_framework() -> None:
    """workpool and workpool.integrations import no web framework, rich or OpenTelemetry.

    svcs imports its own framework integrations when the frameworks are installed;
    they are hidden here, as they would be absent without the extras.
    """
    import subprocess

    code = (
        "import sys\n"
        "for name in ('aiohttp', 'fastapi', 'flask', 'starlette'):\n"
        "    sys.modules['svcs.' + name] = None\n"
        "import workpool, workpool.integrations\n"
        "print(sorted(m for m, mod in sys.modules.items() if mod is not None and "
        "m.split('.')[0] in {'starlette', 'fastapi', 'opentelemetry', 'rich', 'httpx'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
