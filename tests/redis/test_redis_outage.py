"""Redis killed and restarted under load: enqueue raises ChannelUnavailableError while it
is down, the consumers recover by themselves, and every accepted item completes (as does
any refused item whose add reached the server before its reply was lost)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.redis import jobs
from tests.redis.helpers import pending, stream_length
from workpool import ChannelUnavailableError, WorkerPool
from workpool.redis import RedisChannel

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.redis.resp import RedisServer

pytestmark = pytest.mark.anyio


async def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.02)


async def test_redis_killed_and_restarted_under_load(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workpool")
    jobs.RAN.clear()
    accepted: set[int] = set()
    refused: list[int] = []
    producing = True

    async def produce(pool: WorkerPool) -> None:
        n = 0
        while producing:
            try:
                await pool.enqueue(jobs.record.bind(n))
            except ChannelUnavailableError:
                refused.append(n)
            else:
                accepted.add(n)
            n += 1
            await anyio.sleep(0.002)

    channel = RedisChannel(private_redis.url, queue="outage", lease=1.0, outage_timeout=0.5)
    async with WorkerPool(channel=channel, tasks=[jobs], consumers=4) as pool:
        async with anyio.create_task_group() as group:
            group.start_soon(produce, pool)
            await wait_until(lambda: len(jobs.RAN) >= 50)
            private_redis.kill()
            await wait_until(lambda: len(refused) >= 2)  # enqueue gives up meanwhile
            private_redis.start()  # same port, same AOF
            before = len(accepted)
            await wait_until(lambda: len(accepted) >= before + 50)  # accepted again
            producing = False
        await wait_until(lambda: accepted <= {n for n, _, _ in jobs.RAN})
        # An enqueue refused during the outage may still have been stored (its reply was
        # lost: README, "the item may or may not be stored"); such an item runs too, so
        # wait for the stream to empty before shutting down.
        await wait_until(lambda: stream_length("outage", private_redis.port) == 0)
    ran = {n for n, _, _ in jobs.RAN}
    assert accepted <= ran, sorted(accepted - ran)[:10]
    assert refused
    assert ran - accepted <= set(refused), sorted(ran - accepted - set(refused))[:10]
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("Redis unreachable") for m in messages)
    assert any(m.startswith("Redis reachable again") for m in messages)
    assert stream_length("outage", private_redis.port) == 0
    assert pending("outage", private_redis.port) == 0
    jobs.RAN.clear()
