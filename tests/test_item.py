"""WorkItem: ids, names, timestamps, states, and what may be enqueued."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pytest

from workpool import ItemState, Scope, SessionManager, StopToken, WorkItem
from workpool._item import new_uuid4


async def send_receipt(order_id: int, scope: Scope, stopping: StopToken) -> None:
    """A work function taking one bound argument."""


def sync_work(scope: Scope, stopping: StopToken) -> None:
    """A sync work function."""


class AsyncCallable:
    async def __call__(self, scope: Scope, stopping: StopToken) -> None:
        """An instance with an async __call__."""


class TestId:
    def test_id_is_uuid4(self) -> None:
        """An item's id is a version-4 UUID."""
        item = WorkItem(sync_work)
        assert isinstance(item.id, uuid.UUID)
        assert item.id.version == 4
        assert item.id.variant == uuid.RFC_4122

    def test_id_is_stable(self) -> None:
        """Reading an item's id twice gives the same UUID."""
        item = WorkItem(sync_work)
        assert item.id is item.id

    def test_ids_are_distinct(self) -> None:
        """Two items have different ids."""
        assert WorkItem(sync_work).id != WorkItem(sync_work).id

    def test_new_uuid4(self) -> None:
        """new_uuid4 makes valid, distinct version-4 UUIDs that behave like uuid4()'s."""
        ids = [new_uuid4() for _ in range(1000)]
        assert len(set(ids)) == 1000
        for uid in ids[:50]:
            assert uid.version == 4
            assert uid.variant == uuid.RFC_4122
            assert uuid.UUID(str(uid)) == uid
            assert uuid.UUID(bytes=uid.bytes) == uid
            assert hash(uuid.UUID(str(uid))) == hash(uid)
            assert uid.is_safe is uuid.SafeUUID.unknown

    def test_new_uuid4_uses_all_random_bits(self) -> None:
        """new_uuid4's 122 random bits all vary, and the version/variant bits never do."""
        ored = 0
        anded = (1 << 128) - 1
        for _ in range(500):
            value = new_uuid4().int
            ored |= value
            anded &= value
        fixed_mask = (0xF << 76) | (0x3 << 62)
        assert ored | fixed_mask == (1 << 128) - 1
        assert anded & ~fixed_mask == 0
        assert (anded >> 76) & 0xF == 4
        assert (ored >> 76) & 0xF == 4
        assert (anded >> 62) & 0x3 == 0b10
        assert (ored >> 62) & 0x3 == 0b10


class TestName:
    def test_defaults_to_qualified_name(self) -> None:
        """Without a name, an item is named after its function's module and qualified name."""
        assert WorkItem(sync_work).name == f"{__name__}.sync_work"

    def test_through_partial(self) -> None:
        """The default name sees through (nested) functools.partial."""
        work = functools.partial(functools.partial(send_receipt, 1))
        assert WorkItem(work).name == f"{__name__}.send_receipt"

    def test_method_qualname(self) -> None:
        """A bound method is named by its qualified name, class included."""
        assert WorkItem(AsyncCallable().__call__).name == f"{__name__}.AsyncCallable.__call__"

    def test_callable_instance(self) -> None:
        """A callable instance is named after its class."""
        assert WorkItem(AsyncCallable()).name == f"{__name__}.AsyncCallable"

    def test_explicit_name(self) -> None:
        """name= wins over the function's name."""
        assert WorkItem(sync_work, name="receipts").name == "receipts"

    def test_repr(self) -> None:
        """repr shows the name and state."""
        assert repr(WorkItem(sync_work, name="x")) == "<WorkItem x QUEUED>"


class TestFields:
    def test_enqueued_at_is_monotonic(self) -> None:
        """enqueued_at is a time.monotonic() reading."""
        before = time.monotonic()
        item = WorkItem(sync_work)
        assert before <= item.enqueued_at <= time.monotonic()

    def test_initial_state(self) -> None:
        """A new item is QUEUED with no attempts, carrying what was given."""
        manager = SessionManager()
        session = manager.create_session()
        item = WorkItem(sync_work, session, timeout=1)
        assert item.state is ItemState.QUEUED
        assert item.attempts == 0
        assert item.parent_session is session
        assert item.work is sync_work
        assert item.retry is None
        assert item.timeout == 1.0
        assert isinstance(item.timeout, float)

    @pytest.mark.parametrize(
        ("work", "is_async"),
        [
            (sync_work, False),
            (functools.partial(send_receipt, 1), True),
            (AsyncCallable(), True),
            (AsyncCallable().__call__, True),
            (lambda scope, stopping: None, False),
        ],
    )
    def test_is_async(self, work: Any, is_async: bool) -> None:
        """Async work runs on the loop, sync work in a thread: told apart through partials."""
        assert WorkItem(work).is_async is is_async


class TestItemState:
    def test_members(self) -> None:
        """ItemState has exactly the seven states of the design."""
        assert [s.name for s in ItemState] == [
            "QUEUED",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "DROPPED",
            "CANCELLED",
            "ABANDONED",
        ]

    @pytest.mark.parametrize("state", list(ItemState))
    def test_finished(self, state: ItemState) -> None:
        """Every state but QUEUED and RUNNING is finished."""
        assert state.finished is (state not in {ItemState.QUEUED, ItemState.RUNNING})


class TestBadInput:
    def test_none(self) -> None:
        """None is a TypeError saying to pass a callable taking (scope, stopping)."""
        with pytest.raises(
            TypeError, match=r"None instead of a work function.*\(scope, stopping\)"
        ):
            WorkItem(None)  # type: ignore[arg-type]

    def test_coroutine(self) -> None:
        """A coroutine object is a TypeError naming the function to pass instead."""
        with pytest.raises(TypeError, match=r"enqueue\(send_receipt\)"):
            WorkItem(send_receipt(1, None, None))  # type: ignore[arg-type]

    def test_not_callable(self) -> None:
        """A non-callable is a TypeError."""
        with pytest.raises(TypeError, match="'str'"):
            WorkItem("send_receipt")  # type: ignore[arg-type]
