"""A/B of options given at enqueue: ``enqueue(work)`` against ``enqueue(work, retry=...)``,
``name=`` and ``timeout=``, in one process.

Each variant enqueues the same no-op items into a pool and runs them; the variants
alternate within each round (the order rotates from round to round) on asyncio and
trio. The figures are medians over the rounds of the time per item, wall clock and
CPU time of the event loop's thread, in microseconds, and each variant's ratio to
the bare enqueue. An item with ``timeout=`` runs each attempt under a deadline (a
cancel scope), so it is compared with bare items in a pool whose ``task_timeout``
is the same: the difference is then what the option costs at enqueue.

    .venv/bin/python bench/ab_enqueue_options.py --rounds 11

On a loaded machine the times scatter by more than the 5% at stake; ``--only``
runs one variant once, so that a load-independent count can be taken per variant
(instructions per item: the difference between two sizes cancels the start-up)::

    perf stat -x, -e instructions:u .venv/bin/python bench/ab_enqueue_options.py \
        --only "retry=" --backends asyncio --items 100000
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from typing import Any

import anyio

import workpool

POLICY = workpool.RetryPolicy.exponential(3, initial=0.01)
TIMEOUT = 60.0

#: variant -> the pool's task_timeout
VARIANTS: dict[str, float | None] = {
    "bare": None,
    "retry=": None,
    "name=": None,
    "retry= name=": None,
    "bare, task_timeout": TIMEOUT,
    "timeout=": None,
    "all three": None,
}
#: variant -> the variant it is compared with
BASELINE = {
    "timeout=": "bare, task_timeout",
    "all three": "bare, task_timeout",
}


async def noop(scope: Any, stopping: Any) -> None:
    """The no-op work function."""


async def produce(variant: str, enqueue: Any, items: int) -> None:
    """Enqueue *items* no-ops as *variant* says, each call spelled out as a user
    writes it (``**options`` would build a dict per call)."""
    if variant in ("bare", "bare, task_timeout"):
        for _ in range(items):
            await enqueue(noop)
    elif variant == "retry=":
        for _ in range(items):
            await enqueue(noop, retry=POLICY)
    elif variant == "name=":
        for _ in range(items):
            await enqueue(noop, name="noop")
    elif variant == "retry= name=":
        for _ in range(items):
            await enqueue(noop, retry=POLICY, name="noop")
    elif variant == "timeout=":
        for _ in range(items):
            await enqueue(noop, timeout=TIMEOUT)
    else:
        for _ in range(items):
            await enqueue(noop, retry=POLICY, name="noop", timeout=TIMEOUT)


async def one_run(
    items: int, consumers: int, capacity: int, task_timeout: float | None, variant: str
) -> tuple[float, float]:
    """Seconds per item, wall clock and CPU of the loop's thread, to enqueue *items*
    no-ops as *variant* says, run them and shut down."""
    started = time.perf_counter()
    cpu_started = time.thread_time()
    # No watchdog thread: its cost is per second, not per item, and it would make
    # instruction counts depend on the wall time.
    async with workpool.WorkerPool(
        consumers=consumers,
        capacity=capacity,
        task_timeout=task_timeout,
        blocked_loop_threshold=None,
    ) as pool:
        await produce(variant, pool.enqueue, items)
    cpu = time.thread_time() - cpu_started
    elapsed = time.perf_counter() - started
    report = pool.report
    assert report is not None
    assert report.succeeded == items, report
    return elapsed / items, cpu / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=1_000)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--only", choices=list(VARIANTS), help="run this variant once")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if args.only is not None:
        for backend in backends:
            anyio.run(
                one_run,
                args.items,
                args.consumers,
                args.capacity,
                VARIANTS[args.only],
                args.only,
                backend=backend,
            )
        return

    samples: dict[tuple[str, str], list[tuple[float, float]]] = {
        (backend, name): [] for backend in backends for name in VARIANTS
    }
    names = list(VARIANTS)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
    for round_number in range(args.rounds):
        # Rotate the order so that no variant always runs first or on a warmer process.
        shift = round_number % len(names)
        order = names[shift:] + names[:shift]
        for backend in backends:
            for name in order:
                gc.collect()
                per_item = anyio.run(
                    one_run,
                    args.items,
                    args.consumers,
                    args.capacity,
                    VARIANTS[name],
                    name,
                    backend=backend,
                )
                samples[backend, name].append(per_item)
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(
        f"{args.items:,} no-op items, {args.consumers} consumers, capacity {args.capacity:,}, "
        f"{args.rounds} rounds; median us per item, ratio to the bare enqueue"
    )
    for backend in backends:
        for name in names:
            base = BASELINE.get(name, "bare")
            line = f"  {backend:8} {name:20}"
            for index, what in ((1, "cpu"), (0, "wall")):
                value = statistics.median(s[index] for s in samples[backend, name]) * 1e6
                reference = statistics.median(s[index] for s in samples[backend, base]) * 1e6
                line += f"  {what} {value:6.3f} ({value / reference:.3f})"
            if base != "bare":
                line += f"  vs {base!r}"
            print(line)


if __name__ == "__main__":
    main()
