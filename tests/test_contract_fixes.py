"""Contract fixes of issue 10: on_end for every item's session, ids on the final
failure record, retries logged, bad work refused at enqueue, nothing lost at GC."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from tenacity import stop_after_attempt, wait_fixed

from workpool import (
    ItemState,
    LogContextFilter,
    RetryPolicy,
    Session,
    SessionManager,
    WorkerPool,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID

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


# -- 2. and 11. the failed attempts' log records carry the item's ids ----------------


class Records(logging.Handler):
    """Keeps workpool's records, through a LogContextFilter as an application would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.addFilter(LogContextFilter())
        self.setFormatter(
            logging.Formatter("%(levelname)s %(work_name)s %(attempt)s %(scope_id)s %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[Records]:
    """workpool's records from WARNING up, seen by a handler with a LogContextFilter."""
    handler = Records()
    handler.setLevel(logging.WARNING)
    log = logging.getLogger("workpool")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def field(record: logging.LogRecord, name: str) -> Any:
    return record.__dict__[name]


async def test_the_final_failure_record_carries_the_last_attempts_ids(records: Records) -> None:
    """The "failed for good" ERROR record has the last attempt's scope_id, session_id,
    work_name and attempt (and the item id), also as a LogContextFilter shows them."""
    scopes: list[Scope] = []

    async def always_fails(scope: Scope, stopping: StopToken) -> None:
        scopes.append(scope)
        raise ValueError(f"attempt {scope.attempt}")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            item = await pool.enqueue(
                always_fails, retry=RetryPolicy.exponential(2, initial=0), name="billing"
            )
    [final] = [r for r in records.records if r.levelno == logging.ERROR]
    assert "failed for good" in final.getMessage()
    assert len(scopes) == 2
    assert field(final, "scope_id") == scopes[-1].id
    assert field(final, "attempt") == 2
    assert field(final, "work_name") == "billing"
    assert field(final, "item_id") == item.id
    session_id = field(final, "session_id")
    assert session_id is not None
    [retry] = [r for r in records.records if r.levelno == logging.WARNING]
    assert field(retry, "session_id") == session_id  # one session for all attempts
    [line] = [line for line in records.lines if line.startswith("ERROR")]
    assert line.startswith(f"ERROR billing 2 {scopes[-1].id} ")


async def test_the_final_failure_record_names_the_session_the_work_used(
    records: Records,
) -> None:
    """A sync item without retries: the record's session is the one the work read."""
    seen: list[tuple[UUID, UUID | None]] = []

    def fails(scope: Scope, stopping: StopToken) -> None:
        seen.append((scope.id, scope.session_id))
        raise RuntimeError("no")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(fails)
    [final] = [r for r in records.records if r.levelno == logging.ERROR]
    assert (field(final, "scope_id"), field(final, "session_id")) == seen[0]
    assert field(final, "attempt") == 1


async def test_each_retry_is_logged_once_at_warning(records: Records) -> None:
    """Each retry: one WARNING with the attempt, the delay, the exception and the ids."""
    scopes: list[Scope] = []

    async def flaky(scope: Scope, stopping: StopToken) -> None:
        scopes.append(scope)
        if scope.attempt < 3:
            raise ConnectionError(f"refused #{scope.attempt}")

    policy = RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.01))
    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            item = await pool.enqueue(flaky, retry=policy)
    assert item.state is ItemState.SUCCEEDED
    assert [r.levelno for r in records.records] == [logging.WARNING] * 2
    for number, record in enumerate(records.records, start=1):
        message = record.getMessage()
        assert f"attempt {number} failed" in message
        assert f"ConnectionError: refused #{number}" in message
        assert f"attempt {number + 1} in 0.01 s" in message
        assert field(record, "attempt") == number
        assert field(record, "scope_id") == scopes[number - 1].id
        assert field(record, "item_id") == item.id
        assert field(record, "work_name") == item.name
    assert pool.stats().retried == 2
