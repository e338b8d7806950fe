"""An item's own session is made only when its work reads it (no parent, no on_end
hook): the item runner then holds it for every attempt and ends it with the item."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest
from tenacity import stop_after_attempt

from workpool import RetryPolicy, Scope, Session, StopToken, WorkerPool

if TYPE_CHECKING:
    from uuid import UUID

    from workpool import SessionManager

pytestmark = pytest.mark.anyio

TWICE = RetryPolicy(stop=stop_after_attempt(2))


def live(manager: SessionManager) -> list[Session]:
    return list(manager)


async def test_an_item_that_never_reads_its_session_makes_none() -> None:
    made: list[UUID] = []
    async with WorkerPool(consumers=4) as pool:
        manager = pool.session_manager

        async def quiet(scope: Scope, stopping: StopToken) -> None:
            made.extend(s.id for s in manager)

        for _ in range(20):
            await pool.enqueue(quiet)
    assert made == []
    assert pool.stats().succeeded == 20


async def test_a_session_read_by_the_work_ends_with_the_item() -> None:
    seen: list[Session] = []
    async with WorkerPool(consumers=4) as pool:

        async def reads(scope: Scope, stopping: StopToken) -> None:
            seen.append(scope.session)
            await anyio.sleep(0)
            assert scope.session is seen[-1]  # the same on every read

        for _ in range(50):
            await pool.enqueue(reads)
        await pool.join()
        assert live(pool.session_manager) == []  # each ended as its item finished
    assert len({s.id for s in seen}) == 50  # one per item, never shared
    assert all(s.ended for s in seen)


async def test_the_attempts_of_an_item_share_the_session_the_first_one_made() -> None:
    sessions: list[UUID] = []

    async def flaky(scope: Scope, stopping: StopToken) -> None:
        sessions.append(scope.session.id)
        if len(sessions) == 1:
            raise ValueError("first attempt fails")

    async with WorkerPool(consumers=2) as pool:
        await pool.enqueue(flaky, retry=TWICE)
        await pool.join()
        assert live(pool.session_manager) == []
    assert len(sessions) == 2
    assert sessions[0] == sessions[1]
    assert pool.stats().succeeded == 1


async def test_a_session_made_on_the_second_attempt_is_ended_too() -> None:
    sessions: list[Session] = []
    attempts = 0

    async def late_reader(scope: Scope, stopping: StopToken) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ValueError("first attempt fails without a session")
        sessions.append(scope.session)

    async with WorkerPool(consumers=1) as pool:
        await pool.enqueue(late_reader, retry=TWICE)
        await pool.join()
        assert live(pool.session_manager) == []
    assert len(sessions) == 1
    assert sessions[0].ended


async def test_the_failure_record_names_the_session_the_work_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read: list[UUID] = []

    async def broken(scope: Scope, stopping: StopToken) -> None:
        read.append(scope.session.id)
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="workpool"):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(broken)
            await pool.join()
            assert live(pool.session_manager) == []
    [record] = [r for r in caplog.records if "failed for good" in r.getMessage()]
    assert record.session_id == read[0]  # type: ignore[attr-defined]


async def test_a_scope_kept_past_its_attempt_makes_no_session() -> None:
    kept: list[Scope] = []

    async def keep(scope: Scope, stopping: StopToken) -> None:
        kept.append(scope)

    async with WorkerPool(consumers=1) as pool:
        await pool.enqueue(keep)
        await pool.join()
        with pytest.raises(RuntimeError, match="closed"):
            kept[0].session  # noqa: B018
        assert kept[0].session_id is None
        assert live(pool.session_manager) == []
