"""Worker processes sharing a Redis queue: work is shared, each item runs once, and a
worker killed with SIGKILL mid-item loses nothing."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.redis import jobs
from tests.redis.helpers import PORT, pending, stream_length
from workpool.redis import RedisChannel

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import Process

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("worker.py")


class Workers:
    """Worker processes started by a test, all stopped at its end."""

    def __init__(self, url: str, queue: str, backend: str) -> None:
        self.url, self.queue, self.backend = url, queue, backend
        self.processes: list[Process] = []

    async def start(self, *, lease: float, consumers: int = 4) -> Process:
        arguments = [self.url, self.queue, str(lease), str(consumers), self.backend]
        process = await anyio.open_process(
            [sys.executable, str(WORKER), *arguments],
            stderr=None,
        )
        self.processes.append(process)
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await process.stdout.receive()
        assert line.startswith(b"ready"), line
        return process

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
        for process in self.processes:
            with anyio.fail_after(30):
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


@pytest.fixture
async def workers(redis_server: str, queue: str, anyio_backend: str) -> AsyncIterator[Workers]:
    group = Workers(redis_server, queue, anyio_backend)
    try:
        yield group
    finally:
        with anyio.CancelScope(shield=True):
            await group.stop()


async def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.05)


async def test_three_worker_processes_share_the_work_and_run_each_item_once(
    redis_server: str, queue: str, workers: Workers
) -> None:
    started = [await workers.start(lease=5) for _ in range(3)]
    producer = RedisChannel(redis_server, queue=queue)
    try:
        for n in range(150):
            await producer.enqueue(jobs.mark.bind(PORT, queue, n))
    finally:
        await producer.aclose()
    await wait_until(lambda: len(jobs.runs(PORT, queue)) >= 150)
    await workers.stop()
    assert all(process.returncode == 0 for process in started)
    ran = [entry.split(":") for entry in jobs.runs(PORT, queue)]
    assert sorted(int(n) for n, _, _ in ran) == list(range(150))  # each once
    assert {pid for _, pid, _ in ran} == {str(process.pid) for process in started}
    assert stream_length(queue) == 0
    assert pending(queue) == 0


async def test_a_worker_killed_mid_item_loses_nothing(
    redis_server: str, queue: str, workers: Workers
) -> None:
    doomed = await workers.start(lease=1)
    producer = RedisChannel(redis_server, queue=queue)
    try:
        await producer.enqueue(jobs.mark_slow_first.bind(PORT, queue, 1, 60))
        await producer.enqueue(jobs.mark.bind(PORT, queue, 2))
    finally:
        await producer.aclose()
    await wait_until(lambda: len(jobs.runs(PORT, queue, "started")) == 2)
    os.kill(doomed.pid, signal.SIGKILL)
    await doomed.wait()
    survivor = await workers.start(lease=1)
    # Claimed again once the dead worker's lease ran out, as a second delivery.
    await wait_until(lambda: len(jobs.runs(PORT, queue)) == 2)
    await workers.stop()
    assert sorted(jobs.runs(PORT, queue)) == sorted([f"1:{survivor.pid}:2", f"2:{doomed.pid}:1"])
    assert stream_length(queue) == 0
    assert pending(queue) == 0
