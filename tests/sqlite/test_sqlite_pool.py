"""SqliteChannel under a WorkerPool: tasks end to end, dead letters, shutdown, outages."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
from tenacity import stop_after_attempt, wait_fixed

from tests.helpers.accounting import assert_delivered_accounted
from workpool import (
    ChannelUnavailableError,
    DeadLetter,
    RetryPolicy,
    Scope,
    StopToken,
    WorkerPool,
    WorkItem,
    task,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.sqlite.conftest import MakeChannel

pytestmark = pytest.mark.anyio

runs: dict[str, list[Any]] = {}


def record(name: str, value: object) -> None:
    runs.setdefault(name, []).append(value)


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    runs.clear()


@task(name="tests.sqlite.pool.collect")
async def collect(scope: Scope, stopping: StopToken, tag: str, n: int) -> None:
    record(tag, (n, scope.item.deliveries, scope.attempt))


@task(name="tests.sqlite.pool.sync_collect")
def sync_collect(scope: Scope, stopping: StopToken, tag: str, n: int) -> None:
    record(tag, n)


@task(name="tests.sqlite.pool.boom")
async def boom(scope: Scope, stopping: StopToken, tag: str) -> None:
    record(tag, scope.attempt)
    if len(runs[tag]) == 1:
        raise ValueError("boom")


@task(
    name="tests.sqlite.pool.flaky",
    retry=RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.4)),
)
async def flaky(scope: Scope, stopping: StopToken, tag: str) -> None:
    record(tag, (scope.attempt, scope.item.deliveries))
    if scope.attempt < 3:
        raise RuntimeError(f"attempt {scope.attempt}")


@task(name="tests.sqlite.pool.sleepy")
async def sleepy(scope: Scope, stopping: StopToken, tag: str) -> None:
    record(tag, scope.item.deliveries)
    await anyio.sleep_forever()


@task(name="tests.sqlite.pool.slow")
async def slow(scope: Scope, stopping: StopToken, tag: str, seconds: float) -> None:
    await anyio.sleep(seconds)
    record(tag, scope.item.deliveries)


TASKS = [collect, sync_collect, boom, flaky, sleepy, slow]


async def test_tasks_run_end_to_end(make_channel: MakeChannel) -> None:
    """Async and sync tasks run once each; the invariant holds after shutdown."""
    channel = make_channel()
    pool = WorkerPool(channel=channel, tasks=TASKS, consumers=4)
    with anyio.fail_after(30):
        async with pool:
            for n in range(50):
                await pool.enqueue(collect.bind("e2e", n))
                await pool.enqueue(sync_collect.bind("e2e-sync", n))
            await pool.join()
    assert sorted(n for n, _, _ in runs["e2e"]) == list(range(50))
    assert {(d, a) for _, d, a in runs["e2e"]} == {(1, 1)}
    assert sorted(runs["e2e-sync"]) == list(range(50))
    stats = pool.stats()
    assert (stats.delivered, stats.succeeded, stats.failed) == (100, 100, 0)
    assert_delivered_accounted(pool)


async def test_failure_is_dead_lettered_and_replayed(make_channel: MakeChannel) -> None:
    """A task that fails for good is a dead letter (reason, error, traceback), the
    hook is called; replay runs it again, purge deletes."""
    channel = make_channel()
    hooked: list[tuple[WorkItem, BaseException]] = []
    pool = WorkerPool(
        channel=channel,
        tasks=TASKS,
        on_dead_letter=lambda item, exc: hooked.append((item, exc)),
    )
    with anyio.fail_after(30):
        async with pool:
            item = await pool.enqueue(boom.bind("dead"))
            await pool.join()
            [letter] = await channel.dead_letters()
            assert isinstance(letter, DeadLetter)
            assert (letter.id, letter.name, letter.reason) == (item.id, boom.name, "failed")
            assert letter.error == "ValueError: boom"
            assert letter.traceback is not None
            assert "raise ValueError" in letter.traceback
            assert (letter.args, letter.kwargs) == (["dead"], {})
            assert (letter.attempts, letter.deliveries) == (1, 1)
            assert letter.failed_at.tzinfo is not None
            assert await channel.replay([letter.id]) == 1
            await pool.join()
            assert await channel.dead_letters() == []
    assert runs["dead"] == [1, 1]
    assert [(i.id, type(e)) for i, e in hooked] == [(item.id, ValueError)]
    assert_delivered_accounted(pool)


async def test_purge_dead(make_channel: MakeChannel) -> None:
    """purge_dead deletes the given dead letters, or all."""
    channel = make_channel()
    async with WorkerPool(channel=channel, tasks=TASKS) as pool:
        for n in range(3):
            await pool.enqueue(boom.bind(f"purge{n}"))
        with anyio.fail_after(30):
            await pool.join()
    letters = await channel.dead_letters()
    assert len(letters) == 3
    assert len(await channel.dead_letters(limit=2)) == 2
    assert await channel.purge_dead([letters[0].id]) == 1
    assert await channel.purge_dead() == 2
    assert await channel.dead_letters() == []
    with pytest.raises(TypeError):
        await channel.replay(letters[0].id)  # type: ignore[arg-type]


async def test_unknown_task_is_dead_lettered_without_running(make_channel: MakeChannel) -> None:
    """A message whose task this worker does not know is dead-lettered at once."""
    producer = make_channel()
    item = await producer.enqueue(collect.bind("unknown", 1))
    pool = WorkerPool(channel=make_channel(), tasks=[boom])
    with anyio.fail_after(30):
        async with pool:
            await pool.join()
    assert "unknown" not in runs
    [letter] = await producer.dead_letters()
    assert (letter.id, letter.reason) == (item.id, "unknown_task")
    assert "no task named" in letter.error
    assert_delivered_accounted(pool)


async def test_bad_arguments_are_dead_lettered(make_channel: MakeChannel, db: Path) -> None:
    """Arguments that do not validate against the task's annotations: bad_payload."""
    producer = make_channel()
    await producer.enqueue(collect.bind("bad", 1))
    with sqlite3.connect(db) as conn:
        conn.execute(
            """UPDATE workpool_messages SET payload = '{"args": ["bad", "x"], "kwargs": {}}'"""
        )
    conn.close()
    pool = WorkerPool(channel=make_channel(), tasks=TASKS)
    with anyio.fail_after(30):
        async with pool:
            await pool.join()
    [letter] = await producer.dead_letters()
    assert letter.reason == "bad_payload"
    assert letter.args == ["bad", "x"]
    assert "bad" not in runs
    assert pool.stats().failed == 1


async def test_long_backoff_is_rescheduled(make_channel: MakeChannel) -> None:
    """A retry wait above lease/2 reschedules in the store; attempts keep counting."""
    channel = make_channel(lease=0.6)  # waits of 0.4 s > 0.3 s
    pool = WorkerPool(channel=channel, tasks=TASKS)
    with anyio.fail_after(30):
        async with pool:
            await pool.enqueue(flaky.bind("flaky"))
            await pool.join()
    assert runs["flaky"] == [(1, 1), (2, 2), (3, 3)]  # each reschedule is a new delivery
    stats = pool.stats()
    assert (stats.rescheduled, stats.succeeded, stats.delivered) == (2, 1, 3)
    assert_delivered_accounted(pool)


async def test_short_backoff_sleeps_in_the_consumer(make_channel: MakeChannel) -> None:
    """A retry wait within lease/2 is slept in the consumer, the lease renewed."""
    channel = make_channel(lease=1.0)  # waits of 0.4 s < 0.5 s
    pool = WorkerPool(channel=channel, tasks=TASKS)
    with anyio.fail_after(30):
        async with pool:
            await pool.enqueue(flaky.bind("sleeps"))
            await pool.join()
    assert runs["sleeps"] == [(1, 1), (2, 1), (3, 1)]
    assert (pool.stats().rescheduled, pool.stats().delivered) == (0, 1)
    assert_delivered_accounted(pool)


async def test_task_longer_than_the_lease_runs_once(make_channel: MakeChannel) -> None:
    """The lease is renewed while an item runs: two pools, a task of 3 leases, one run."""
    first, second = make_channel(lease=0.5), make_channel(lease=0.5)
    with anyio.fail_after(30):
        one, two = WorkerPool(channel=first, tasks=TASKS), WorkerPool(channel=second, tasks=TASKS)
        async with one, two:
            await one.enqueue(slow.bind("long", 1.5))
            await one.join()
    assert runs["long"] == [1]
    assert one.stats().redelivered + two.stats().redelivered == 0


async def test_shutdown_releases_what_it_holds(make_channel: MakeChannel) -> None:
    """At the deadline, running items are released, listed in the report, and another
    pool takes them at once with deliveries kept."""
    channel = make_channel()
    pool = WorkerPool(channel=channel, tasks=TASKS, consumers=2, shutdown_deadline=0.2)
    with anyio.fail_after(30):
        async with pool:
            items = [await pool.enqueue(sleepy.bind("held")) for _ in range(2)]
            while len(runs.get("held", [])) < 2:
                await anyio.sleep(0.01)
    report = pool.report
    assert report is not None
    assert sorted(i.id for i in report.released) == sorted(i.id for i in items)
    assert report.abandoned == ()
    assert report.cancelled == ()
    assert_delivered_accounted(pool)
    other = WorkerPool(channel=make_channel(), tasks=TASKS, shutdown_deadline=0.1, consumers=2)
    with anyio.fail_after(30):
        async with other:
            while len(runs["held"]) < 4:
                await anyio.sleep(0.01)
    assert runs["held"] == [1, 1, 2, 2]
    assert other.stats().redelivered == 2


async def test_two_pools_share_the_work(make_channel: MakeChannel) -> None:
    """Two pools on one file run every item exactly once between them."""
    producer = make_channel()
    first = WorkerPool(channel=make_channel(), tasks=TASKS, consumers=3)
    second = WorkerPool(channel=make_channel(), tasks=TASKS, consumers=3)
    with anyio.fail_after(60):
        async with first, second:
            for n in range(200):
                await producer.enqueue(collect.bind("shared", n))
            await first.join()
            await second.join()
    assert sorted(n for n, _, _ in runs["shared"]) == list(range(200))
    assert first.stats().succeeded + second.stats().succeeded == 200
    assert_delivered_accounted(first)
    assert_delivered_accounted(second)


async def test_outage(
    make_channel: MakeChannel, db: Path, workpool_logs: pytest.LogCaptureFixture
) -> None:
    """A file locked by another process: enqueue gives up after outage_timeout with
    ChannelUnavailableError; consumers log one WARNING and one INFO, retry their
    acknowledgements, and nothing is lost."""
    channel = make_channel(outage_timeout=0.4)
    pool = WorkerPool(channel=channel, tasks=TASKS)
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    with anyio.fail_after(30):
        async with pool:
            await pool.enqueue(slow.bind("outage", 0.3))
            while channel._claims.held == {}:  # claimed: now lock the file
                await anyio.sleep(0.01)
            locker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(ChannelUnavailableError, match="unavailable"):
                await pool.enqueue(collect.bind("outage", 2))
            await anyio.sleep(0.5)  # the item ends; its acknowledgement waits
            locker.execute("COMMIT")
            await pool.join()
    locker.close()
    assert runs["outage"] == [1]
    warnings = [r for r in workpool_logs.records if "is unavailable" in r.message]
    recoveries = [r for r in workpool_logs.records if "available again" in r.message]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert [r.levelno for r in recoveries] == [logging.INFO]
    assert_delivered_accounted(pool)
    assert await channel.dead_letters() == []


async def test_enqueue_from_a_thread(make_channel: MakeChannel) -> None:
    """enqueue_threadsafe stores a task call from another thread; the item has its id."""
    pool = WorkerPool(channel=make_channel(), tasks=TASKS)
    with anyio.fail_after(30):
        async with pool:

            def produce() -> list[WorkItem]:
                return [pool.enqueue_threadsafe(collect.bind("thread", n)) for n in range(5)]

            items = await anyio.to_thread.run_sync(produce)
            await pool.join()
    assert len({item.id for item in items}) == 5
    assert sorted(n for n, _, _ in runs["thread"]) == list(range(5))
    assert_delivered_accounted(pool)
