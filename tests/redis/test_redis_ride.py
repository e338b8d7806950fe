"""What rides along with the Redis channel's enqueue script call (acknowledgements, a
read for the waiting consumers), read-ahead, and retries of that call."""

from __future__ import annotations

import anyio
import pytest

from tests.redis import jobs
from tests.redis.helpers import TASKS, pending, stream_length
from workpool._item import new_uuid4
from workpool._seam import Settle
from workpool.redis import RedisChannel

pytestmark = pytest.mark.anyio


def _message(n: int) -> tuple[object, ...]:
    return (new_uuid4().hex, "tests.redis.record", f'{{"args":[{n}],"kwargs":{{}}}}')


async def test_an_enqueue_carries_the_acknowledgements_and_reads_for_the_consumers(
    redis_server: str, queue: str
) -> None:
    # No pool: nothing runs the flusher, so only the enqueue can write the ack.
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.open(TASKS)
        await channel.enqueue(jobs.record.bind(1))
        item = await channel.claim()
        channel.settle(item, Settle.DONE)
        assert pending(queue) == 1
        sent = await channel.enqueue(jobs.record.bind(2))
        assert stream_length(queue) == 1  # the first one acknowledged and deleted
        again = channel.claim_nowait()  # read by the same call, no blocking read
        assert again.id == sent.id
        channel.settle(again, Settle.DONE)
        await channel._consumer.flush()
    finally:
        await channel.aclose()
    assert stream_length(queue) == 0
    assert pending(queue) == 0


async def test_a_channel_that_only_enqueues_reads_nothing(redis_server: str, queue: str) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    try:
        await channel.enqueue(jobs.record.bind(1))
        await channel.enqueue(jobs.record.bind(2))
        assert channel.qsize() == 0
    finally:
        await channel.aclose()
    assert stream_length(queue) == 2


async def test_items_read_ahead_are_handed_back_at_close_with_their_deliveries(
    redis_server: str, queue: str
) -> None:
    first = RedisChannel(redis_server, queue=queue, lease=60)
    second = RedisChannel(redis_server, queue=queue, lease=60)
    try:
        await first.open(TASKS)
        await second.open(TASKS)
        sent = [await first.enqueue(jobs.record.bind(n)) for n in range(3)]
        item = await first.claim()
        assert first.qsize() == 2  # read ahead, not handed out
        first.settle(item, Settle.DONE)
        await first.aclose()
        assert pending(queue) == 0
        with anyio.fail_after(10):
            rest = [await second.claim(), await second.claim()]
        assert {i.id for i in rest} == {s.id for s in sent[1:]}
        assert [i.deliveries for i in rest] == [1, 1]
        for again in rest:
            second.settle(again, Settle.DONE)
    finally:
        await first.aclose()
        await second.aclose()
    assert stream_length(queue) == 0


async def test_a_retried_add_call_adds_nothing_twice(redis_server: str, queue: str) -> None:
    channel = RedisChannel(redis_server, queue=queue)
    store = channel._store
    try:
        await store.ensure()
        messages = [(*_message(n), "0", "0", "", "", "", 0) for n in range(3)]
        call = new_uuid4().hex
        results, _ = await store.add(messages, call=call, capacity=-1, seen_ms=60_000)
        again, _ = await store.add(messages, call=call, capacity=-1, seen_ms=60_000)
        assert [code for code, _ in results] == [1, 1, 1]
        assert again == results
        assert stream_length(queue) == 3
        other, _ = await store.add(messages[:1], call=new_uuid4().hex, capacity=-1, seen_ms=1)
        assert [code for code, _ in other] == [1]  # another call adds it (a new message)
        assert stream_length(queue) == 4
    finally:
        await channel.aclose()
