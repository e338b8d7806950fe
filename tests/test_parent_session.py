"""A queued item holds its parent session from acceptance until it runs or leaves."""

from __future__ import annotations

import anyio
import pytest

from workpool import (
    BackgroundWorker,
    FullMode,
    ItemState,
    Scope,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
)

pytestmark = pytest.mark.anyio


async def test_request_leaving_before_the_item_starts_keeps_the_session() -> None:
    """A request that enqueues and releases its session before any consumer starts
    the item does not end it: the item runs in that session, which ends after it."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    seen: list[Session] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        seen.append(scope.session)
        assert not scope.session.ended

    pool = WorkerPool(consumers=1, session_manager=manager)
    session = manager.create_session("request")
    session.data["user"] = "ada"
    await pool.enqueue(work, session)  # queued before the pool even starts
    await manager.release(session, "request")
    assert not session.ended
    assert ended == []
    with anyio.fail_after(5):
        async with pool:
            await pool.join()
    assert seen == [session]
    assert ended == [session]
    assert len(manager) == 0


async def test_dropped_item_lets_its_parent_session_go() -> None:
    """An item evicted by a full channel releases its hold: the session ends once the
    request has left too."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)

    async def work(scope: Scope, stopping: StopToken) -> None:
        pass

    worker = BackgroundWorker(capacity=1, full_mode=FullMode.DROP_OLDEST)
    session = manager.create_session("request")
    first = await worker.enqueue(work, session)
    await manager.release(session, "request")
    assert not session.ended
    await worker.enqueue(work)  # evicts the first
    assert first.state is ItemState.DROPPED
    assert ended == [session]


async def test_dropped_item_from_sync_code_lets_its_parent_session_go() -> None:
    """``enqueue_nowait`` that evicts a session-holding item ends the session through
    the running pool."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    release = anyio.Event()

    async def blocker(scope: Scope, stopping: StopToken) -> None:
        await release.wait()

    async def work(scope: Scope, stopping: StopToken) -> None:
        pass

    with anyio.fail_after(5):
        async with WorkerPool(
            consumers=1, capacity=1, full_mode="drop_oldest", session_manager=manager
        ) as pool:
            pool.enqueue_nowait(blocker)
            await anyio.wait_all_tasks_blocked()
            session = manager.create_session("request")
            held = pool.enqueue_nowait(work, session)
            await manager.release(session, "request")
            pool.enqueue_nowait(work)  # evicts the session's item
            assert held.state is ItemState.DROPPED
            await anyio.wait_all_tasks_blocked()  # the spawned release has run
            assert ended == [session]
            release.set()
    # then the sessions of the blocker and of the last item (on_end sees every one)
    assert ended[0] is session
    assert len(ended) == 3


async def test_abandoned_item_lets_its_parent_session_go() -> None:
    """Items abandoned at the shutdown deadline release their parent session."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    pool = WorkerPool(consumers=1, session_manager=manager)

    async def work(scope: Scope, stopping: StopToken) -> None:
        pass

    session = manager.create_session("request")
    item = await pool.enqueue(work, session)
    await manager.release(session, "request")
    report = await pool.shutdown(deadline=0)  # never started: everything abandoned
    assert report.abandoned == (item,)
    assert ended == [session]
    assert len(manager) == 0


async def test_parent_of_another_manager_is_not_joined() -> None:
    """A session from another SessionManager is unknown to the pool: the item runs in
    a session of its own and the other session is left as it was."""
    other = SessionManager()
    foreign = other.create_session("request")
    seen: list[Session] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        seen.append(scope.session)

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(work, foreign)
            await pool.join()
    assert seen[0] is not foreign
    assert foreign.scopes == frozenset({"request"})
    assert not foreign.ended
