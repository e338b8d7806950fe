"""Group commit of enqueue calls (`workpool._redis_adder.Adder`), with a fake write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from workpool._redis_adder import Adder

if TYPE_CHECKING:
    from collections.abc import Sequence

pytestmark = pytest.mark.anyio


class FakeWrite:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = anyio.Event()
        self.fail: Exception | None = None

    async def __call__(self, messages: list[Sequence[Any]]) -> list[tuple[int, bytes]]:
        self.batches.append([m[0] for m in messages])
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [(1, str(m[0]).encode()) for m in messages]


async def test_calls_made_during_a_write_share_the_next_one() -> None:
    write = FakeWrite()
    adder = Adder(write)
    results: dict[int, tuple[int, bytes]] = {}

    async def add(n: int) -> None:
        results[n] = await adder.add((n,))

    async with anyio.create_task_group() as group:
        for n in range(3):  # ready together: one write (its leader lets them join)
            group.start_soon(add, n)
        await anyio.wait_all_tasks_blocked()
        for n in range(3, 7):  # made while it is under way: the next one
            group.start_soon(add, n)
        await anyio.wait_all_tasks_blocked()
        first = [len(batch) for batch in write.batches]
        write.gate.set()
    assert first == [3]
    assert [len(batch) for batch in write.batches] == [3, 4]
    assert sorted(n for batch in write.batches for n in batch) == list(range(7))
    assert results == {n: (1, str(n).encode()) for n in range(7)}


async def test_a_cancelled_waiting_call_is_taken_out_and_the_others_go_on() -> None:
    write = FakeWrite()
    adder = Adder(write)
    results: list[int] = []

    async def add(n: int) -> None:
        await adder.add((n,))
        results.append(n)

    async with anyio.create_task_group() as group:
        group.start_soon(add, 0)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as doomed:
            doomed.cancel()
            group.start_soon(add, 1)  # not in this scope: runs
            await adder.add((2,))  # cancelled while it waits
        group.start_soon(add, 3)
        await anyio.wait_all_tasks_blocked()
        write.gate.set()
    assert sorted(results) == [0, 1, 3]
    assert 2 not in [n for batch in write.batches for n in batch]


async def test_a_failed_write_fails_every_call_in_it() -> None:
    write = FakeWrite()
    write.fail = RuntimeError("down")
    adder = Adder(write)
    errors: list[BaseException] = []

    async def add(n: int) -> None:
        try:
            await adder.add((n,))
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for n in range(3):
            group.start_soon(add, n)
        await anyio.wait_all_tasks_blocked()
        write.gate.set()
    assert len(errors) == 3
