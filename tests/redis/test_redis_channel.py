"""RedisChannel's own operations against a real Redis (each test its own queue)."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.redis import jobs
from tests.redis.helpers import PORT, TASKS, pending, stream_length
from tests.redis.resp import command
from workpool import ChannelUnavailableError, PoolClosedError, QueueFullError, RetryPolicy
from workpool._redis_message import Held
from workpool._seam import Settle
from workpool.redis import RedisChannel

if TYPE_CHECKING:
    from workpool import WorkItem

# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"full_mode": "drop_oldest"}, "full_mode"),
        ({"lease": 0}, "lease"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"queue": ""}, "queue"),
        ({"queue": "a{b}"}, "queue"),
        ({"capacity": 0}, "capacity"),
    ],
)
def test_bad_options_fail_in_the_constructor(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisChannel(**options)


def test_a_url_that_is_not_redis_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ValueError, match="redis://") as caught:
        RedisChannel("http://user:hunter2@example.com/0")
    assert "hunter2" not in str(caught.value)


def test_the_password_never_shows() -> None:
    channel = RedisChannel("rediss://app:hunter2@redis.internal:6380/2", queue="mail")
    assert "hunter2" not in repr(channel)
    assert "hunter2" not in channel.url
    assert channel.url == "rediss://app:***@redis.internal:6380/2"
    bare = RedisChannel("redis://hunter2@redis.internal/0?password=hunter3&db=1")
    assert bare.url == "redis://***@redis.internal/0?password=***&db=1"


def test_from_url_takes_the_queue_from_the_query() -> None:
    channel = RedisChannel.from_url("redis://127.0.0.1:6379/0?queue=mail", lease=5)
    assert channel.queue == "mail"
    assert channel.lease == 5
    assert channel.max_local_backoff == 2.5


# -- producing -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_enqueue_refuses_what_a_durable_channel_cannot_store(
    redis_server: str, queue: str
) -> None:
    channel = RedisChannel(redis_server, queue=queue, max_message_bytes=1000)
    try:
        with pytest.raises(TypeError, match="@task"):
            await channel.enqueue(lambda scope, stopping: None)
        with pytest.raises(TypeError, match="retry"):
            await channel.enqueue(jobs.record.bind(1), retry=RetryPolicy.exponential(2))
        with pytest.raises(TypeError, match="enqueue_nowait"):
            channel.enqueue_nowait(jobs.record.bind(1))
        bad: Any = b"bytes"
        with pytest.raises(TypeError, match="args\\[0\\]"):
            await channel.enqueue(jobs.record.bind(bad))
        with pytest.raises(ValueError, match="max_message_bytes"):
            await channel.enqueue(jobs.nap.bind(1, seconds="x" * 2000))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="delay"):
            await channel.enqueue(jobs.record.bind(1), delay=-1)
        assert await channel.unfinished() == 0
    finally:
        await channel.aclose()
    with pytest.raises(PoolClosedError):
        await channel.enqueue(jobs.record.bind(1))


@pytest.mark.anyio
async def test_claims_are_fifo_and_acknowledged_entries_leave_the_stream(
    redis_server: str, queue: str
) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.open(TASKS)
        sent = [await channel.enqueue(jobs.record.bind(n)) for n in range(5)]
        assert channel.enqueued_total == 5
        claimed = [await channel.claim() for _ in sent]
        assert [item.id for item in claimed] == [item.id for item in sent]
        assert [item.deliveries for item in claimed] == [1] * 5
        assert claimed[0].work == jobs.record.bind(0)
        for item in claimed:
            channel.settle(item, Settle.DONE)
    finally:
        await channel.aclose()
    assert stream_length(queue) == 0
    assert pending(queue) == 0


@pytest.mark.anyio
async def test_a_renewal_racing_an_acknowledgement_reports_no_lost_lease(
    redis_server: str, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry settled here whose acknowledgement is being written is not pending any
    more: a lease renewal that finds it so must not call its lease lost."""
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.open(TASKS)
        await channel.enqueue(jobs.record.bind(1))
        item = await channel.claim()
        channel.settle(item, Settle.DONE)
        consumer = channel._consumer
        receipt = item.receipt
        assert isinstance(receipt, Held)
        # The acknowledgement is written, not yet forgotten here: a renewal in between
        # finds the entry no longer pending and reports it.
        with caplog.at_level(logging.WARNING, logger="workpool"):
            consumer._lost([receipt.entry])
        assert not [r for r in caplog.records if "lease" in r.getMessage()]
        await consumer.flush()
    finally:
        await channel.aclose()
    assert stream_length(queue) == 0


@pytest.mark.anyio
async def test_a_key_holds_one_unfinished_item_and_is_free_once_it_finished(
    redis_server: str, queue: str
) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    try:
        first = await channel.enqueue(jobs.record.bind(1), key="order-1")
        again = await channel.enqueue(jobs.record.bind(2), key="order-1")
        other = await channel.enqueue(jobs.record.bind(3), key="order-2")
        assert again.id == first.id
        assert other.id != first.id
        assert await channel.unfinished() == 2
        await channel.open(TASKS)
        item = await channel.claim()
        assert item.id == first.id
        assert item.key == "order-1"
        channel.settle(item, Settle.DONE)
    finally:
        await channel.aclose()
    channel = RedisChannel(redis_server, queue=queue)
    try:
        later = await channel.enqueue(jobs.record.bind(4), key="order-1")
        assert later.id != first.id
    finally:
        await channel.aclose()


@pytest.mark.anyio
async def test_capacity_rejects_in_reject_mode(redis_server: str, queue: str) -> None:
    channel = RedisChannel(redis_server, queue=queue, capacity=2, full_mode="reject")
    try:
        await channel.enqueue(jobs.record.bind(1))
        await channel.enqueue(jobs.record.bind(2), delay=60)  # delayed items count too
        with pytest.raises(QueueFullError, match="full"):
            await channel.enqueue(jobs.record.bind(3))
        assert channel.rejected_total == 1
        assert await channel.unfinished() == 2
    finally:
        await channel.aclose()


@pytest.mark.anyio
async def test_capacity_waits_for_room_in_wait_mode(redis_server: str, queue: str) -> None:
    channel = RedisChannel(redis_server, queue=queue, capacity=1)
    accepted = anyio.Event()
    try:
        await channel.open(TASKS)
        await channel.enqueue(jobs.record.bind(1))

        async def third() -> None:
            await channel.enqueue(jobs.record.bind(2))
            accepted.set()

        async with anyio.create_task_group() as group:
            group.start_soon(third)
            group.start_soon(channel.run)
            item = await channel.claim()
            await anyio.sleep(0.1)
            assert not accepted.is_set()
            channel.settle(item, Settle.DONE)
            with anyio.fail_after(10):
                await accepted.wait()
            group.cancel_scope.cancel()
    finally:
        await channel.aclose()


@pytest.mark.anyio
async def test_a_delayed_item_is_not_claimed_before_its_delay(
    redis_server: str, queue: str
) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.open(TASKS)
        started = anyio.current_time()
        sent = await channel.enqueue(jobs.record.bind(1), delay=0.4)
        async with anyio.create_task_group() as group:
            group.start_soon(channel.run)
            with anyio.fail_after(10):
                item = await channel.claim()
            group.cancel_scope.cancel()
        assert item.id == sent.id
        assert anyio.current_time() - started >= 0.4
        channel.settle(item, Settle.DONE)
    finally:
        await channel.aclose()
    assert stream_length(queue) == 0


@pytest.mark.anyio
async def test_unknown_tasks_and_bad_payloads_are_rejected_at_claim(
    redis_server: str, queue: str
) -> None:
    stream = f"workpool:{{{queue}}}:stream"
    good = '{"args":[1],"kwargs":{}}'
    stored = [
        ("nobody.knows", good),
        ("tests.redis.record", "not json"),
        ("tests.redis.record", '{"args":["x"],"kwargs":{}}'),
    ]
    for number, (name, args) in enumerate(stored):
        command(PORT, "XADD", stream, "*", "id", f"{number:032x}", "name", name, "args", args)
    command(PORT, "XADD", stream, "*", "something", "else")  # not a workpool message
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.open(TASKS)
        reasons = []
        for _ in range(4):
            item = await channel.claim()
            assert item.rejection is not None
            reasons.append(item.rejection[0])
            channel.settle(item, Settle.DEAD, reason=item.rejection[0], error=item.rejection[1])
    finally:
        await channel.aclose()
    assert reasons == ["unknown_task", "bad_payload", "bad_payload", "bad_payload"]
    inspect = RedisChannel(redis_server, queue=queue)
    try:
        letters = await inspect.dead_letters()
        assert [letter.reason for letter in letters] == reasons
        assert "nobody.knows" in letters[0].error
        assert letters[0].args == [1]
        assert letters[0].failed_at.tzinfo is not None
    finally:
        await inspect.aclose()
    assert stream_length(queue) == 0


@pytest.mark.anyio
async def test_dead_letters_replay_and_purge(redis_server: str, queue: str) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.open(TASKS)
        for n in range(3):
            await channel.enqueue(jobs.record.bind(n))
        for _ in range(3):
            item = await channel.claim()
            channel.settle(item, Settle.DEAD, reason="failed", error=ValueError("boom"))
    finally:
        await channel.aclose()
    channel = RedisChannel(redis_server, queue=queue)
    try:
        letters = await channel.dead_letters()
        assert [letter.error for letter in letters] == ["ValueError: boom"] * 3
        assert [letter.deliveries for letter in letters] == [1, 1, 1]
        assert len(await channel.dead_letters(limit=2)) == 2
        assert await channel.replay([letters[0].id]) == 1
        assert await channel.replay([letters[0].id]) == 0
        assert await channel.purge_dead([letters[1].id]) == 1
        assert [letter.id for letter in await channel.dead_letters()] == [letters[2].id]
        assert await channel.purge_dead() == 1
        assert await channel.dead_letters() == []
        await channel.open(TASKS)
        item = await channel.claim()
        assert item.id == letters[0].id
        assert (item.deliveries, item.attempts) == (1, 0)
        channel.settle(item, Settle.DONE)
    finally:
        await channel.aclose()
    assert stream_length(queue) == 0


@pytest.mark.anyio
async def test_a_released_item_is_claimable_at_once_with_its_deliveries(
    redis_server: str, queue: str
) -> None:
    first = RedisChannel(redis_server, queue=queue, lease=60)
    second = RedisChannel(redis_server, queue=queue, lease=60)
    try:
        await first.open(TASKS)
        await second.open(TASKS)
        sent = await first.enqueue(jobs.record.bind(1))
        item = await first.claim()
        first.settle(item, Settle.RELEASED)
        await first.aclose()
        with anyio.fail_after(10):
            again = await second.claim()
        assert again.id == sent.id
        assert again.deliveries == 2
        second.settle(again, Settle.DONE)
    finally:
        await first.aclose()
        await second.aclose()
    assert stream_length(queue) == 0


@pytest.mark.anyio
async def test_items_read_but_never_handed_out_are_given_back_at_close(
    redis_server: str, queue: str
) -> None:
    first = RedisChannel(redis_server, queue=queue, lease=60)
    try:
        await first.open(TASKS)
        await first.enqueue(jobs.record.bind(1))
        await first.enqueue(jobs.record.bind(2))
        item = await first.claim()
        first.settle(item, Settle.DONE)
        # Claimed by this process (in its PEL), never handed to a consumer:
        await first._store.read(1, 1)
    finally:
        await first.aclose()
    assert pending(queue) == 0
    assert stream_length(queue) == 1


@pytest.mark.anyio
async def test_concurrent_enqueues_keep_keys_and_capacity_exact(
    redis_server: str, queue: str
) -> None:
    channel = RedisChannel(redis_server, queue=queue, capacity=10, full_mode="reject")
    try:
        same_key: list[WorkItem] = []
        outcomes: list[str] = []

        async def keyed(n: int) -> None:
            same_key.append(await channel.enqueue(jobs.record.bind(n), key="one"))

        async def plain(n: int) -> None:
            try:
                await channel.enqueue(jobs.record.bind(n))
            except QueueFullError:
                outcomes.append("full")
            else:
                outcomes.append("ok")

        await keyed(-1)  # the key is taken first; the others get its item, even when full
        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(keyed, n)
            for n in range(30):
                group.start_soon(plain, n)
        assert len({item.id for item in same_key}) == 1
        assert outcomes.count("ok") == 9  # the keyed one took the tenth place
        assert outcomes.count("full") == 21
        assert await channel.unfinished() == 10
    finally:
        await channel.aclose()


@pytest.mark.anyio
async def test_enqueue_gives_up_when_redis_cannot_be_reached(
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = RedisChannel(f"redis://:hunter2@127.0.0.1:{port}/0", outage_timeout=0.3)
    try:
        for _ in range(2):
            with pytest.raises(ChannelUnavailableError, match="unreachable"):
                await channel.enqueue(jobs.record.bind(1))
    finally:
        await channel.aclose()
    warnings = [r for r in workpool_logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one line for the outage, not one per attempt
    assert "hunter2" not in workpool_logs.text
