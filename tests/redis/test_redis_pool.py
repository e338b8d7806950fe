"""A WorkerPool on RedisChannel, end to end: the delivery guarantees of DESIGN section 5."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.helpers.accounting import assert_delivered_accounted
from tests.redis import jobs
from tests.redis.helpers import PORT, TASKS, pending, stream_length
from tests.redis.resp import command
from workpool import WorkerPool
from workpool.redis import RedisChannel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from workpool import WorkItem

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    jobs.RAN.clear()
    yield
    jobs.RAN.clear()


async def wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


async def test_every_item_runs_once_and_the_stream_ends_empty(
    redis_server: str, queue: str
) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    async with WorkerPool(channel=channel, tasks=[jobs], consumers=8) as pool:
        sent = [await pool.enqueue(jobs.record.bind(n)) for n in range(200)]
        await wait_until(lambda: len(jobs.RAN) >= 200)
    assert sorted(n for n, _, _ in jobs.RAN) == list(range(200))
    assert {(deliveries, attempt) for _, deliveries, attempt in jobs.RAN} == {(1, 1)}
    assert len({item.id for item in sent}) == 200
    stats = pool.stats()
    assert (stats.delivered, stats.succeeded, stats.redelivered) == (200, 200, 0)
    assert_delivered_accounted(pool)
    assert stream_length(queue) == 0
    assert pending(queue) == 0


async def test_a_long_retry_backoff_reschedules_in_the_store(redis_server: str, queue: str) -> None:
    channel = RedisChannel(redis_server, queue=queue, lease=0.5)
    async with WorkerPool(channel=channel, tasks=[jobs], consumers=2) as pool:
        await pool.enqueue(jobs.rescheduled.bind(1))
        await wait_until(lambda: len(jobs.RAN) == 1)
    assert jobs.RAN == [(1, 2, 2)]  # second delivery, second attempt
    assert pool.stats().rescheduled == 1
    assert_delivered_accounted(pool)
    assert stream_length(queue) == 0


async def test_a_task_longer_than_the_lease_runs_once(redis_server: str, queue: str) -> None:
    first = RedisChannel(redis_server, queue=queue, lease=0.6)
    second = RedisChannel(redis_server, queue=queue, lease=0.6)
    async with (
        WorkerPool(channel=first, tasks=[jobs], consumers=2) as one,
        WorkerPool(channel=second, tasks=[jobs], consumers=2) as two,
    ):
        await one.enqueue(jobs.nap.bind(1, 2.5))  # four leases long
        await wait_until(lambda: len(jobs.RAN) == 1)
        await anyio.sleep(1.0)  # a second run would have started by now
    assert jobs.RAN == [(1, 1, 1)]
    assert one.stats().delivered + two.stats().delivered == 1
    assert stream_length(queue) == 0


async def crash_after_claim(url: str, queue: str) -> WorkItem:
    """A consumer that claims one item and dies: no settlement, no hand-back."""
    channel = RedisChannel(url, queue=queue, lease=0.3, max_deliveries=2)
    await channel.open(TASKS)
    async with anyio.create_task_group() as group:
        group.start_soon(channel.run)
        with anyio.fail_after(15):
            item = await channel.claim()
        group.cancel_scope.cancel()
    await channel._store.stop()  # the process is gone
    return item


async def test_an_item_that_keeps_killing_its_process_is_dead_lettered(
    redis_server: str, queue: str
) -> None:
    producer = RedisChannel(redis_server, queue=queue)
    sent = await producer.enqueue(jobs.record.bind(1))
    await producer.aclose()
    first = await crash_after_claim(redis_server, queue)
    second = await crash_after_claim(redis_server, queue)  # after the first one's lease
    assert (first.id, first.deliveries) == (sent.id, 1)
    assert (second.id, second.deliveries) == (sent.id, 2)
    dead: list[WorkItem] = []
    channel = RedisChannel(redis_server, queue=queue, lease=0.3, max_deliveries=2)
    async with WorkerPool(
        channel=channel,
        tasks=[jobs],
        on_dead_letter=lambda item, exc: dead.append(item),
    ) as pool:
        await wait_until(lambda: len(dead) == 1)
    assert jobs.RAN == []  # never ran again
    assert pool.stats().failed == 1
    inspect = RedisChannel(redis_server, queue=queue)
    letters = await inspect.dead_letters()
    await inspect.aclose()
    assert [(letter.id, letter.reason, letter.deliveries) for letter in letters] == [
        (sent.id, "delivery_limit", 3)
    ]
    assert "max_deliveries=2" in letters[0].error
    assert stream_length(queue) == 0
    assert pending(queue) == 0


async def test_items_released_at_shutdown_are_taken_at_once_by_another_pool(
    redis_server: str, queue: str
) -> None:
    leaving = RedisChannel(redis_server, queue=queue, lease=60)
    staying = RedisChannel(redis_server, queue=queue, lease=60)
    async with WorkerPool(channel=leaving, tasks=[jobs], consumers=1, shutdown_deadline=0.2) as one:
        sent = await one.enqueue(jobs.stuck_first.bind(7))
        await wait_until(lambda: one.stats().busy == 1)
        async with WorkerPool(channel=staying, tasks=[jobs], consumers=2) as two:
            report = await one.shutdown()
            assert [item.id for item in report.released] == [sent.id]
            # Far sooner than the 60 s lease: it was handed back, not abandoned.
            await wait_until(lambda: len(jobs.RAN) == 1, seconds=15)
    assert jobs.RAN == [(7, 2, 1)]  # second delivery, attempts kept
    assert one.stats().released == 1
    assert_delivered_accounted(one)
    assert_delivered_accounted(two)
    assert stream_length(queue) == 0


async def test_a_lost_consumer_group_is_recreated_and_logged_as_a_loss(
    redis_server: str, queue: str, workpool_logs: pytest.LogCaptureFixture
) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    async with WorkerPool(channel=channel, tasks=[jobs], consumers=2) as pool:
        await pool.enqueue(jobs.record.bind(1))
        await wait_until(lambda: len(jobs.RAN) == 1)
        command(PORT, "XGROUP", "DESTROY", f"workpool:{{{queue}}}:stream", "workpool")
        await wait_until(
            lambda: any("lost its consumer group" in r.getMessage() for r in workpool_logs.records)
        )
        await pool.enqueue(jobs.record.bind(2))
        await wait_until(lambda: len(jobs.RAN) == 2)
    errors = [r for r in workpool_logs.records if "lost its consumer group" in r.getMessage()]
    assert errors
    assert errors[0].levelno == logging.ERROR
    assert sorted(n for n, _, _ in jobs.RAN) == [1, 2]
    assert stream_length(queue) == 0
