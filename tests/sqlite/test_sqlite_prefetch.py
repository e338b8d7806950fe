"""SqliteChannel's prefetch: items claimed ahead of the waiting consumers."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.helpers.accounting import assert_delivered_accounted
from workpool import Scope, SqliteChannel, StopToken, WorkerPool, open_channel, task
from workpool._seam import Settle

if TYPE_CHECKING:
    from pathlib import Path

    from tests.sqlite.conftest import MakeChannel

runs: dict[str, list[Any]] = {}


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    runs.clear()


@task(name="tests.sqlite.prefetch.collect")
async def collect(scope: Scope, stopping: StopToken, tag: str, n: int) -> None:
    runs.setdefault(tag, []).append((n, scope.item.deliveries))


@task(name="tests.sqlite.prefetch.fail")
async def fail(scope: Scope, stopping: StopToken, tag: str, n: int) -> None:
    runs.setdefault(tag, []).append((n, scope.item.deliveries))
    raise ValueError(f"no {n}")


@task(name="tests.sqlite.prefetch.block")
async def block(scope: Scope, stopping: StopToken, tag: str, n: int) -> None:
    runs.setdefault(tag, []).append((n, scope.item.deliveries))
    await anyio.sleep_forever()


TASKS = [collect, fail, block]
BY_NAME = {t.name: t for t in TASKS}


def claimed_rows(db: Path, by: SqliteChannel | None = None) -> list[tuple[int, int]]:
    """``(deliveries, strikes)`` of the messages claimed in the file now (*by*: by
    that channel)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT deliveries, strikes FROM workpool_messages WHERE claimed_by IS NOT NULL"
            " AND claimed_by = coalesce(?, claimed_by)",
            (None if by is None else by._owner,),
        ).fetchall()


@pytest.mark.parametrize("bad", [-1, 1.5, "8", True])
def test_bad_prefetch_is_a_value_error(db: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="prefetch"):
        SqliteChannel(db, prefetch=bad)  # type: ignore[arg-type]


def test_prefetch_default_and_value(db: Path) -> None:
    assert SqliteChannel(db).prefetch == 32
    assert SqliteChannel(db, prefetch=0).prefetch == 0
    assert SqliteChannel(db, prefetch=5).prefetch == 5


@pytest.mark.anyio
@pytest.mark.parametrize(("prefetch", "expected"), [(0, 1), (4, 5)])
async def test_a_claim_takes_waiting_plus_prefetch(
    make_channel: MakeChannel, db: Path, prefetch: int, expected: int
) -> None:
    """One waiting consumer: prefetch=0 claims one item in the store, prefetch=4 five;
    the rest of the queue stays unclaimed."""
    channel = make_channel(prefetch=prefetch)
    ids = [(await channel.enqueue(collect.bind("claim", n))).id for n in range(20)]
    await channel.open(BY_NAME)
    with anyio.fail_after(10):
        first = await channel.claim()
    assert first.id == ids[0]
    assert len(claimed_rows(db)) == expected
    assert len(channel._claims.held) == expected
    channel.settle(first, Settle.DONE)
    # Handed out FIFO, from the buffer first.
    got = [first]
    with anyio.fail_after(10):
        for _ in range(19):
            got.append(await channel.claim())
            channel.settle(got[-1], Settle.DONE)
        await channel.join()
    assert [item.id for item in got] == ids
    assert {item.deliveries for item in got} == {1}


@pytest.mark.anyio
async def test_prefetched_items_are_released_at_shutdown(
    make_channel: MakeChannel, db: Path
) -> None:
    """A pool whose one consumer is busy holds prefetched items; at shutdown they go
    back to the store at once (not counted as deliveries, no strike), and another pool
    takes them without waiting for the lease."""
    channel = make_channel(prefetch=8, lease=60.0)
    pool = WorkerPool(channel=channel, tasks=TASKS, consumers=1, shutdown_deadline=0.2)
    for n in range(12):
        await channel.enqueue(block.bind("held", n))
    with anyio.fail_after(30):
        async with pool:
            while not runs.get("held") or len(channel._claims.ready) < 8:
                await anyio.sleep(0.01)
            assert len(claimed_rows(db)) == 9  # one running, eight buffered
    stats = pool.stats()
    assert (stats.delivered, stats.released) == (1, 1)
    assert_delivered_accounted(pool)
    report = pool.report
    assert report is not None
    assert len(report.released) == 1
    assert claimed_rows(db) == []
    with sqlite3.connect(db) as conn:
        counts = conn.execute(
            "SELECT deliveries, strikes, count(*) FROM workpool_messages "
            "GROUP BY deliveries, strikes ORDER BY deliveries"
        ).fetchall()
    assert counts == [(0, 0, 11), (1, 0, 1)]
    # The lease is a minute: only a release makes them claimable in time.
    other = WorkerPool(
        channel=make_channel(prefetch=0, lease=60.0),
        tasks=TASKS,
        consumers=12,
        shutdown_deadline=0.1,
    )
    with anyio.fail_after(20):
        async with other:
            while len(runs["held"]) < 13:
                await anyio.sleep(0.01)
    assert sorted(runs["held"][1:]) == [(0, 2)] + [(n, 1) for n in range(1, 12)]
    assert other.stats().redelivered == 1
    assert_delivered_accounted(other)


@pytest.mark.anyio
@pytest.mark.parametrize("prefetch", [3, 16])
async def test_pool_with_prefetch_runs_everything_once(
    make_channel: MakeChannel, prefetch: int
) -> None:
    """Successes and failures through a prefetching pool: each item runs once, with
    deliveries 1; ``delivered == succeeded + failed + released + rescheduled``."""
    channel = make_channel(prefetch=prefetch)
    pool = WorkerPool(channel=channel, tasks=TASKS, consumers=4)
    with anyio.fail_after(60):
        async with pool:
            for n in range(150):
                await pool.enqueue(collect.bind("ok", n))
                if n % 10 == 0:
                    await pool.enqueue(fail.bind("bad", n))
            await pool.join()
    assert sorted(runs["ok"]) == [(n, 1) for n in range(150)]
    assert sorted(runs["bad"]) == [(n, 1) for n in range(0, 150, 10)]
    stats = pool.stats()
    assert (stats.delivered, stats.succeeded, stats.failed) == (165, 150, 15)
    assert_delivered_accounted(pool)
    assert len(await channel.dead_letters(limit=100)) == 15


@pytest.mark.anyio
async def test_two_prefetching_pools_share_the_work(make_channel: MakeChannel) -> None:
    """Two pools claiming ahead on one file never run an item twice."""
    producer = make_channel()
    first = WorkerPool(channel=make_channel(prefetch=8), tasks=TASKS, consumers=2)
    second = WorkerPool(channel=make_channel(prefetch=8), tasks=TASKS, consumers=2)
    with anyio.fail_after(60):
        async with first, second:
            for n in range(200):
                await producer.enqueue(collect.bind("shared", n))
            await first.join()
            await second.join()
    assert sorted(runs["shared"]) == [(n, 1) for n in range(200)]
    assert first.stats().succeeded + second.stats().succeeded == 200
    assert_delivered_accounted(first)
    assert_delivered_accounted(second)


def test_prefetch_in_a_channel_url(db: Path) -> None:
    channel = open_channel(f"sqlite:///{db}?prefetch=0")
    assert isinstance(channel, SqliteChannel)
    assert channel.prefetch == 0
    assert open_channel(f"sqlite:///{db}", prefetch=7).prefetch == 7  # type: ignore[attr-defined]
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(ValueError, match="prefetch must be a whole number"):
            open_channel(f"sqlite:///{db}?prefetch={bad}")


@pytest.mark.anyio
async def test_items_of_a_dead_process_are_not_claimed_ahead(
    make_channel: MakeChannel, db: Path
) -> None:
    """A process that died with a buffer: its items come back after the lease with
    a strike, and are then claimed only for waiting consumers (one may be what killed
    the process), so that the neighbours of such an item never pile up strikes in a
    buffer; fresh items after them are claimed ahead again."""
    producer = make_channel()
    ids = [(await producer.enqueue(collect.bind("dead", n))).id for n in range(5)]
    dead = make_channel(prefetch=4, lease=0.3)
    await dead.open(BY_NAME)
    with anyio.fail_after(10):
        first = await dead.claim()  # five claimed: one "running", four buffered
    assert first.id == ids[0]
    assert len(claimed_rows(db)) == 5
    dead._claims.closed = True  # the process "dies": no renewal, no hand-back
    dead._claims.ready.clear()
    dead._claims.held.clear()
    await anyio.sleep(0.5)  # the lease runs out
    ids += [(await producer.enqueue(collect.bind("dead", n))).id for n in range(5, 12)]
    alive = make_channel(prefetch=4)
    await alive.open(BY_NAME)
    got = []
    with anyio.fail_after(10):
        got.append(await alive.claim())
        # One for the waiting consumer, none ahead: the next one has a strike too.
        assert claimed_rows(db, by=alive) == [(2, 2)]
        for _ in range(11):
            got.append(await alive.claim())
            alive.settle(got[-1], Settle.DONE)
        alive.settle(got[0], Settle.DONE)
        await alive.join()
    assert [item.id for item in got] == ids
    assert [item.deliveries for item in got] == [2] * 5 + [1] * 7
