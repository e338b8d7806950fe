"""A/B of the in-memory channel's per-item operations, without an event loop.

``bench/ab_hot_path.py`` times whole pools, which a loaded machine makes noisy
(an A/A run differs by up to 25 % at a load of 8 on 2 cores). This script times
only the channel's share of an item: ``await enqueue`` (driven by hand: with room
it never suspends), ``claim_nowait`` and ``settle``, for batches of items, and
reports the best and the median batch of many short rounds, alternating the two
packages. The best is what a quiet machine would show.

    .venv/bin/python bench/ab_channel_ops.py --before 40d1939
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_hot_path import load_commit

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType


async def noop(scope: Any, stopping: Any) -> None:
    """The no-op work function."""


def drive(coroutine: Any) -> Any:
    """Run a coroutine that must not suspend; return its result."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine suspended")


def make_round(package: ModuleType, batch: int) -> Callable[[], tuple[int, int, int]]:
    """A function timing one batch: ns per item for enqueue, claim_nowait, settle."""
    worker = package.BackgroundWorker(capacity=batch)
    done = package._seam.Settle.DONE
    enqueue = worker.enqueue
    claim_nowait = worker.claim_nowait
    settle = worker.settle
    clock = time.perf_counter_ns
    span = range(batch)

    def one_round() -> tuple[int, int, int]:
        started = clock()
        for _ in span:
            drive(enqueue(noop))
        enqueued = clock()
        items = [claim_nowait() for _ in span]
        claimed = clock()
        for item in items:
            settle(item, done)
        settled = clock()
        return (
            (enqueued - started) // batch,
            (claimed - enqueued) // batch,
            (settled - claimed) // batch,
        )

    return one_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="40d1939")
    parser.add_argument("--after", default=None, help="a commit; default: this tree")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    if args.after is None:
        import workpool as after
        import workpool._seam  # noqa: F401  (make package._seam reachable)
    else:
        after = load_commit(args.after, "workpool_after")
        importlib_seam(after)
    before = load_commit(args.before, "workpool_before")
    importlib_seam(before)
    rounds = {"before": make_round(before, args.batch), "after": make_round(after, args.batch)}
    samples: dict[str, list[tuple[int, int, int]]] = {name: [] for name in rounds}
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
    gc.disable()
    try:
        for number in range(args.rounds):
            order = list(rounds) if number % 2 == 0 else list(reversed(rounds))
            for name in order:
                samples[name].append(rounds[name]())
            if number % 20 == 0:
                gc.collect()
    finally:
        gc.enable()
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(
        f"{args.rounds} rounds of {args.batch} items; ns per item (before = {args.before}, "
        f"after = {args.after or 'this tree'})"
    )
    for index, what in enumerate(("await enqueue", "claim_nowait", "settle")):
        for stat, pick in (("best", min), ("median", statistics.median)):
            b = pick(s[index] for s in samples["before"])
            a = pick(s[index] for s in samples["after"])
            print(f"  {what:14} {stat:6} before {b:6.0f}  after {a:6.0f}  after/before {a / b:.3f}")


def importlib_seam(package: ModuleType) -> None:
    """Import the package's ``_seam`` submodule (for ``Settle``)."""
    import importlib

    importlib.import_module(f"{package.__name__}._seam")


if __name__ == "__main__":
    main()
