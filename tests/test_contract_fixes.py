"""Contract fixes of issue 10: on_end for every item's session, ids on the final
failure record, retries logged, bad work refused at enqueue, nothing lost at GC."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from workpool import RetryPolicy, Session, SessionManager, WorkerPool

if TYPE_CHECKING:
    from workpool import Scope, StopToken

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    """Does nothing, and never reads scope.session."""


# -- 1. on_end runs once for every item's session -----------------------------------


async def test_on_end_runs_for_items_that_never_read_their_session() -> None:
    """With an on_end hook, each item gets its own session, ended once after it ran,
    even when the work never reads scope.session."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    with anyio.fail_after(5):
        async with WorkerPool(consumers=2, session_manager=manager) as pool:
            for _ in range(5):
                await pool.enqueue(noop)
    assert len(ended) == 5
    assert len({session.id for session in ended}) == 5
    assert all(session.ended for session in ended)
    assert len(manager) == 0


async def test_on_end_sees_the_session_the_work_used() -> None:
    """The session on_end gets is the one the item's attempts saw, across retries."""
    ended: list[Session] = []
    seen: list[Session] = []
    manager = SessionManager()
    manager.add_on_end(ended.append)  # a hook added after the manager was made

    async def flaky(scope: Scope, stopping: StopToken) -> None:
        seen.append(scope.session)
        if scope.attempt == 1:
            raise ValueError("once")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, session_manager=manager) as pool:
            await pool.enqueue(flaky, retry=RetryPolicy.exponential(2, initial=0))
    assert len(seen) == 2
    assert seen[0] is seen[1]
    assert ended == [seen[0]]


async def test_on_end_runs_for_an_item_whose_parent_had_ended() -> None:
    """An item whose parent session had ended runs in a new session of its own,
    which on_end sees too (the parent's own end was seen once, before)."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    parent = manager.create_session("request")
    pool = WorkerPool(consumers=1, session_manager=manager)
    await pool.enqueue(noop, parent)
    await manager.end_session(parent)
    with anyio.fail_after(5):
        async with pool:
            await pool.join()
    assert len(ended) == 2
    assert ended[0] is parent
    assert ended[1] is not parent


async def test_without_hooks_no_session_is_made_for_work_that_never_reads_it() -> None:
    """Nobody can tell without an on_end hook: no session is made (the fast path)."""
    created: list[Session] = []
    manager = SessionManager()
    original = manager.create_session

    def spy(*args: object, **kwargs: object) -> Session:
        session = original(*args, **kwargs)  # type: ignore[arg-type]
        created.append(session)
        return session

    manager.create_session = spy  # type: ignore[method-assign]
    with anyio.fail_after(5):
        async with WorkerPool(consumers=2, session_manager=manager) as pool:
            for _ in range(5):
                await pool.enqueue(noop)
    assert created == []
    assert pool.stats().succeeded == 5
