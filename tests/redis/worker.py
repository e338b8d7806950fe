"""A worker process for the Redis tests:
``python tests/redis/worker.py URL QUEUE LEASE CONSUMERS BACKEND``.

Runs a pool with the tasks of `tests.redis.jobs` until SIGTERM or SIGINT; prints
``ready`` once it consumes.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root

from tests.redis import jobs
from workpool import WorkerPool
from workpool.redis import RedisChannel


async def main(url: str, queue: str, lease: float, consumers: int) -> None:
    channel = RedisChannel(url, queue=queue, lease=lease)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with WorkerPool(channel=channel, tasks=[jobs], consumers=consumers):
            print("ready", flush=True)
            async for _ in signals:
                break


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    url, queue, lease, consumers, backend = sys.argv[1:6]
    anyio.run(main, url, queue, float(lease), int(consumers), backend=backend)
