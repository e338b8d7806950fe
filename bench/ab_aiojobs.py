"""Issue 10, item 15: no-op throughput of workpool against aiojobs, interleaved.

Scenario 1 and 1b of ``bench/test_1_throughput.py`` time all of one peer's rounds,
then all of the other's; on a shared machine the load can change in between. Here
both run in one process and one asyncio event loop, alternating round by round (the
order flipped every round), at 10,000 and 100,000 no-op items through 4 consumers
and capacity 1,000 (the same runners as the bench suite). The figures are medians
of wall time and of the event loop thread's CPU time per round (the CPU time is
less inflated by other processes on a loaded machine); the ratio is aiojobs' time
divided by workpool's (above 1: workpool is faster), both as the ratio of the
medians and as the median of each round's own ratio (the two runs of a round are
next to each other in time, so they share the machine's load).

    .venv/bin/python bench/ab_aiojobs.py --rounds 5
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

import anyio

from _peers import noop_job, noop_work, run_aiojobs, run_workpool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SIZES = (10_000, 100_000)


def runners(items: int, consumers: int, capacity: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One round of each peer with *items* no-op items."""
    works = [noop_work] * items
    jobs = [noop_job] * items

    async def workpool() -> None:
        await run_workpool(works, consumers=consumers, capacity=capacity)

    async def aiojobs() -> None:
        await run_aiojobs(jobs, consumers=consumers, capacity=capacity)

    return {"workpool": workpool, "aiojobs": aiojobs}


async def measure(args: argparse.Namespace) -> dict[tuple[int, str], list[tuple[float, float]]]:
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for items in SIZES:
        peers = runners(items, args.consumers, args.capacity)
        for name, run in peers.items():  # one untimed warm-up round each
            await run()
            samples[items, name] = []
        for round_number in range(args.rounds):
            order = list(peers) if round_number % 2 == 0 else list(reversed(peers))
            for name in order:
                gc.collect()
                started = time.perf_counter()
                cpu_started = time.thread_time()
                await peers[name]()
                cpu = time.thread_time() - cpu_started
                samples[items, name].append((time.perf_counter() - started, cpu))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=1_000)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
    samples = anyio.run(measure, args, backend="asyncio")
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(
        f"{args.consumers} consumers, capacity {args.capacity:,}, {args.rounds} interleaved "
        "rounds; median us per item; ratio = aiojobs / workpool"
    )
    for items in SIZES:
        ours, theirs = samples[items, "workpool"], samples[items, "aiojobs"]
        for index, what in ((0, "wall"), (1, "cpu ")):
            w = statistics.median(s[index] for s in ours) * 1e6 / items
            a = statistics.median(s[index] for s in theirs) * 1e6 / items
            paired = statistics.median(
                t[index] / o[index] for o, t in zip(ours, theirs, strict=True)
            )
            print(
                f"  {items:>7,} {what}  workpool {w:6.3f}  aiojobs {a:6.3f}  "
                f"ratio {a / w:.2f}x  paired {paired:.2f}x"
            )


if __name__ == "__main__":
    main()
