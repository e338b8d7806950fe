"""SessionManager and Session: reference counting, expiry, on_end, sweeping."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import pytest

from workpool import Session, SessionManager

pytestmark = pytest.mark.anyio


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ended() -> list[Session]:
    return []


@pytest.fixture
def manager(clock: FakeClock, ended: list[Session]) -> SessionManager:
    return SessionManager(60.0, on_end=ended.append, clock=clock)


class TestCreate:
    def test_without_duration(self, manager: SessionManager, clock: FakeClock) -> None:
        """Without a duration a session expires immediately and its deadline uses the default."""
        session = manager.create_session("request")
        assert isinstance(session.id, uuid.UUID)
        assert session.id.version == 4
        assert session.scopes == {"request"}
        assert session.created_at == session.last_accessed_at == clock.now
        assert session.duration is None
        assert session.expires_immediately
        assert session.expires_at == clock.now + 60.0
        assert not session.ended
        assert session.user_id is None
        assert session.data == {}
        assert manager.is_active(session)
        assert len(manager) == 1

    def test_with_duration(self, manager: SessionManager, clock: FakeClock) -> None:
        """With a duration the session lives that long after its last access."""
        session = manager.create_session(duration=5)
        assert session.duration == 5.0
        assert not session.expires_immediately
        assert session.expires_at == clock.now + 5.0
        assert session.scopes == frozenset()

    def test_sessions_are_distinct(self, manager: SessionManager) -> None:
        """Each session has its own id and its own data dict."""
        a, b = manager.create_session(), manager.create_session()
        assert a.id != b.id
        a.data["x"] = 1
        assert b.data == {}
        assert len(manager) == 2

    @pytest.mark.parametrize("duration", [0, -1, float("inf"), float("nan")])
    def test_bad_duration(self, manager: SessionManager, duration: float) -> None:
        """A duration that is not a positive finite number is a ValueError naming duration."""
        with pytest.raises(ValueError, match="duration"):
            manager.create_session(duration=duration)
        assert len(manager) == 0

    @pytest.mark.parametrize("duration", [0, -5.0, float("inf")])
    def test_bad_default_duration(self, duration: float) -> None:
        """A bad default_duration is a ValueError naming default_duration."""
        with pytest.raises(ValueError, match="default_duration"):
            SessionManager(duration)

    @pytest.mark.parametrize("duration", ["60", True])
    def test_duration_not_a_number(self, duration: Any) -> None:
        """A duration that is not a number is a TypeError."""
        with pytest.raises(TypeError, match="default_duration"):
            SessionManager(duration)
        with pytest.raises(TypeError, match="duration"):
            SessionManager().create_session(duration=duration)

    def test_default_clock_is_monotonic(self) -> None:
        """Without clock=, sessions are timed with time.monotonic()."""
        import time

        before = time.monotonic()
        session = SessionManager().create_session()
        assert before <= session.created_at <= time.monotonic()


class TestGet:
    def test_by_uuid_and_str(self, manager: SessionManager) -> None:
        """get finds a live session by UUID or by its string form."""
        session = manager.create_session()
        assert manager.get(session.id) is session
        assert manager.get(str(session.id)) is session
        assert manager.get(session.id.hex) is session

    def test_unknown(self, manager: SessionManager) -> None:
        """get of an unknown or malformed id is None."""
        assert manager.get(uuid.uuid4()) is None
        assert manager.get("not-a-uuid") is None

    async def test_ended_is_gone(self, manager: SessionManager) -> None:
        """An ended session is no longer found."""
        session = manager.create_session()
        await manager.end_session(session)
        assert manager.get(session.id) is None
        assert len(manager) == 0


class TestIsActive:
    def test_unknown_session(self, manager: SessionManager, clock: FakeClock) -> None:
        """A session of another manager is not active here."""
        other = SessionManager(clock=clock).create_session()
        assert not manager.is_active(other)

    async def test_ended(self, manager: SessionManager) -> None:
        """An ended session is not active."""
        session = manager.create_session()
        await manager.end_session(session)
        assert not manager.is_active(session)

    def test_expired(self, manager: SessionManager, clock: FakeClock) -> None:
        """A session past its expires_at is not active, even while held."""
        session = manager.create_session("request", duration=10)
        clock.advance(9.9)
        assert manager.is_active(session)
        clock.advance(0.1)
        assert not manager.is_active(session)


class TestScopes:
    def test_add_scope_refreshes_expiry(self, manager: SessionManager, clock: FakeClock) -> None:
        """add_scope attaches a holder and pushes expires_at from now."""
        session = manager.create_session("a", duration=10)
        clock.advance(8)
        manager.add_scope(session, "b")
        assert session.scopes == {"a", "b"}
        assert session.last_accessed_at == clock.now
        assert session.expires_at == clock.now + 10

    def test_add_scope_without_duration_uses_default(
        self, manager: SessionManager, clock: FakeClock
    ) -> None:
        """Without a duration, a joining scope pushes expires_at by the default duration."""
        session = manager.create_session()
        clock.advance(30)
        manager.add_scope(session, "x")
        assert session.expires_at == clock.now + 60.0

    async def test_add_scope_to_ended(self, manager: SessionManager) -> None:
        """Joining an ended session is a ValueError."""
        session = manager.create_session()
        await manager.end_session(session)
        with pytest.raises(ValueError, match="ended"):
            manager.add_scope(session, "late")

    def test_remove_scope(self, manager: SessionManager, ended: list[Session]) -> None:
        """remove_scope detaches a holder without ending the session; unknown ids are ignored."""
        session = manager.create_session("a")
        manager.add_scope(session, "b")
        manager.remove_scope(session, "a")
        manager.remove_scope(session, "never")
        assert session.scopes == {"b"}
        manager.remove_scope(session, "b")
        assert session.scopes == frozenset()
        assert not session.ended
        assert ended == []

    def test_scopes_is_a_snapshot(self, manager: SessionManager) -> None:
        """scopes is set-like and changing the manager's holders does not change it."""
        session = manager.create_session("a")
        snapshot = session.scopes
        manager.add_scope(session, "b")
        assert snapshot == {"a"}
        assert "b" in session.scopes


class TestRelease:
    async def test_last_holder_ends_immediate_session(
        self, manager: SessionManager, ended: list[Session]
    ) -> None:
        """A session without a duration ends when its last holder releases it."""
        session = manager.create_session("request")
        manager.add_scope(session, "item")
        await manager.release(session, "item")
        assert not session.ended
        assert ended == []
        await manager.release(session, "request")
        assert session.ended
        assert ended == [session]
        assert len(manager) == 0

    async def test_shared_session_outlives_the_request(
        self, manager: SessionManager, ended: list[Session]
    ) -> None:
        """A parent session released by the request lives on while background work holds it."""
        session = manager.create_session("request")
        manager.add_scope(session, "background")
        await manager.release(session, "request")
        assert manager.is_active(session)
        assert ended == []
        await manager.release(session, "background")
        assert ended == [session]

    async def test_session_with_duration_not_ended_until_expired(
        self, manager: SessionManager, clock: FakeClock, ended: list[Session]
    ) -> None:
        """Releasing a session with a duration keeps it until it has expired."""
        session = manager.create_session("a", duration=10)
        manager.add_scope(session, "b")
        clock.advance(5)
        await manager.release(session, "a")
        await manager.release(session, "b")
        assert not session.ended
        assert manager.is_active(session)
        manager.add_scope(session, "c")
        clock.advance(10)  # expires while held
        assert not session.ended
        await manager.release(session, "c")
        assert session.ended
        assert ended == [session]

    async def test_release_unknown_holder(self, manager: SessionManager) -> None:
        """Releasing with an id that does not hold the session keeps the real holders."""
        session = manager.create_session("a")
        await manager.release(session, "stranger")
        assert not session.ended
        assert session.scopes == {"a"}

    async def test_release_of_ended_session(
        self, manager: SessionManager, ended: list[Session]
    ) -> None:
        """Releasing an ended session is harmless and does not call on_end again."""
        session = manager.create_session("a")
        await manager.end_session(session)
        await manager.release(session, "a")
        assert ended == [session]


class TestEndSession:
    async def test_idempotent_on_end_once(
        self, manager: SessionManager, ended: list[Session]
    ) -> None:
        """end_session twice runs on_end exactly once and marks the session ended."""
        session = manager.create_session("a")
        await manager.end_session(session)
        await manager.end_session(session)
        assert session.ended
        assert session.scopes == frozenset()
        assert ended == [session]

    async def test_async_on_end(self, clock: FakeClock) -> None:
        """An async on_end hook is awaited once, with the session and its data."""
        seen: list[dict[str, Any]] = []

        async def on_end(session: Session) -> None:
            await anyio.lowlevel.checkpoint()
            seen.append(dict(session.data))

        manager = SessionManager(on_end=on_end, clock=clock)
        session = manager.create_session("a")
        session.data["cart"] = [1, 2]
        await manager.release(session, "a")
        await manager.end_session(session)
        assert seen == [{"cart": [1, 2]}]

    async def test_concurrent_end_runs_hook_once(self, clock: FakeClock) -> None:
        """Two end_session calls racing on a slow async hook still run it once."""
        calls: list[Session] = []
        release = anyio.Event()

        async def on_end(session: Session) -> None:
            calls.append(session)
            await release.wait()

        manager = SessionManager(on_end=on_end, clock=clock)
        session = manager.create_session()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager.end_session, session)
                tg.start_soon(manager.end_session, session)
                await anyio.wait_all_tasks_blocked()
                release.set()
        assert calls == [session]

    @pytest.mark.parametrize("is_async", [False, True])
    async def test_raising_on_end_is_logged(
        self, clock: FakeClock, is_async: bool, workpool_logs: pytest.LogCaptureFixture
    ) -> None:
        """An on_end hook that raises is logged and swallowed; later hooks still run."""
        later: list[Session] = []

        def broken(session: Session) -> None:
            raise RuntimeError("could not persist")

        async def broken_async(session: Session) -> None:
            raise RuntimeError("could not persist")

        manager = SessionManager(on_end=broken_async if is_async else broken, clock=clock)
        manager.add_on_end(later.append)
        session = manager.create_session()
        await manager.end_session(session)
        assert session.ended
        assert later == [session]
        errors = [r for r in workpool_logs.records if r.levelno == logging.ERROR]
        assert any("on_end" in r.getMessage() for r in errors)
        assert any("could not persist" in (r.exc_text or "") for r in errors)


class TestSweep:
    async def test_sweeps_only_expired_unheld(
        self, manager: SessionManager, clock: FakeClock, ended: list[Session]
    ) -> None:
        """sweep_expired ends expired sessions that nothing holds, and only those."""
        expired_free = manager.create_session(duration=10)
        expired_held = manager.create_session("request", duration=10)
        fresh = manager.create_session(duration=100)
        immediate_free = manager.create_session()  # default 60 s deadline
        clock.advance(30)
        assert await manager.sweep_expired() == 1
        assert ended == [expired_free]
        assert not expired_held.ended
        assert not fresh.ended
        assert not immediate_free.ended
        clock.advance(40)
        assert await manager.sweep_expired() == 1
        assert ended == [expired_free, immediate_free]
        assert len(manager) == 2

    async def test_sweep_nothing(self, manager: SessionManager) -> None:
        """sweep_expired with nothing expired ends nothing."""
        manager.create_session()
        assert await manager.sweep_expired() == 0
        assert len(manager) == 1

    async def test_sweep_spares_session_joined_meanwhile(self, clock: FakeClock) -> None:
        """A session joined while the sweep awaits another's on_end is not ended under its holder."""
        gate = anyio.Event()
        ended: list[Session] = []

        async def on_end(session: Session) -> None:
            ended.append(session)
            if len(ended) == 1:
                await gate.wait()

        manager = SessionManager(on_end=on_end, clock=clock)
        first = manager.create_session(duration=1)
        second = manager.create_session(duration=1)
        clock.advance(2)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager.sweep_expired)
                await anyio.wait_all_tasks_blocked()
                manager.add_scope(second, "request")  # joins while the sweep is busy
                gate.set()
        assert first.ended
        assert not second.ended
        assert second.scopes == {"request"}


class TestRepr:
    async def test_repr(self, manager: SessionManager) -> None:
        """repr tells live from ended sessions and counts live ones."""
        session = manager.create_session("a")
        assert "1 holders" in repr(session)
        assert repr(manager) == "<SessionManager 1 live>"
        await manager.end_session(session)
        assert "ended" in repr(session)
        assert list(manager) == []
