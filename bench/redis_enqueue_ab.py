"""A/B of the producer side alone: what one enqueue costs on Redis.

``RedisChannel.enqueue`` (no pool running: only the producer's work) against a bare
coredis ``XADD`` per task and against ``XADD`` pipelined 100 at a time (the ceiling's
producer), with 16 concurrent producer tasks, on asyncio and trio. Rounds take turns;
medians of wall time and of this process's CPU time per enqueue. Nothing here is part
of ``make bench``; it needs the Redis server on 127.0.0.1:6379.

    python bench/redis_enqueue_ab.py [--items 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import coredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis_peers import URL, delete_keys, fresh_queue, wp_noop

Enqueue = Callable[[], Awaitable[object]]
Variant = Callable[[str], AbstractAsyncContextManager[tuple[Enqueue | None, int]]]

PIPELINE = 100


@asynccontextmanager
async def workpool_enqueue(queue: str) -> AsyncIterator[tuple[Enqueue | None, int]]:
    from workpool.redis import RedisChannel

    channel = RedisChannel(URL, queue=queue)
    call = wp_noop.bind(0.0)
    try:
        yield partial(channel.enqueue, call), 0
    finally:
        await channel.aclose()


@asynccontextmanager
async def bare_xadd(queue: str) -> AsyncIterator[tuple[Enqueue | None, int]]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(URL, decode_responses=False)
    async with client:
        stream = f"{queue}:stream"
        yield partial(client.xadd, stream, {b"t": b"0.0"}), 0


@asynccontextmanager
async def pipelined_xadd(queue: str) -> AsyncIterator[tuple[Enqueue | None, int]]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(URL, decode_responses=False)
    async with client:
        stream = f"{queue}:stream"

        async def batch() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(PIPELINE):
                    pipe.xadd(stream, {b"t": b"0.0"})

        yield batch, PIPELINE


VARIANTS: dict[str, Variant] = {
    "RedisChannel.enqueue": workpool_enqueue,
    "coredis XADD": bare_xadd,
    f"coredis XADD, pipelined {PIPELINE}": pipelined_xadd,
}


async def one_round(variant: Variant, items: int, producers: int) -> tuple[float, float]:
    queue = fresh_queue("ab")
    try:
        async with variant(queue) as (enqueue, per_call):
            assert enqueue is not None
            calls = items // per_call if per_call else items
            workers = 1 if per_call else producers

            async def produce(count: int) -> None:
                for _ in range(count):
                    await enqueue()

            cpu, wall = time.process_time(), time.perf_counter()
            async with anyio.create_task_group() as tg:
                for number in range(workers):
                    tg.start_soon(produce, calls // workers + (number < calls % workers))
            return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        with anyio.CancelScope(shield=True):
            await delete_keys(queue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--producers", type=int, default=16)
    args = parser.parse_args(argv)
    rows = [(name, backend) for name in VARIANTS for backend in ("asyncio", "trio")]
    wall: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    cpu: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    for number in range(args.rounds + 1):  # round 0: warm-up, not kept
        for name, backend in rows if number % 2 else reversed(rows):
            run = partial(one_round, VARIANTS[name], args.items, args.producers)
            elapsed, used = anyio.run(run, backend=backend)
            if number:
                wall[name, backend].append(elapsed)
                cpu[name, backend].append(used)
    print(f"{args.items:,} enqueues a round, medians of {args.rounds} rounds")
    print(f"{'variant':36} {'backend':8} {'wall/op':>10} {'CPU/op':>10} {'ops/s':>10}")
    for row in rows:
        per_wall = statistics.median(wall[row]) / args.items
        per_cpu = statistics.median(cpu[row]) / args.items
        print(
            f"{row[0]:36} {row[1]:8} {per_wall * 1e6:8.1f}µs {per_cpu * 1e6:8.1f}µs "
            f"{1 / per_wall:10,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
