"""A/B of the pool's hot path in one process: a commit's package against this tree.

The package at ``--before`` (default ccc5fe6, main before the redesign) is taken
with ``git archive`` into a temporary directory and imported as ``workpool_before``;
``workpool`` is this tree. Both run the same no-op workload in the same process,
alternating within each round, on asyncio and trio; the figures are medians of
the per-item time over the rounds, in microseconds, and the median of each round's
own after/before ratio ("paired").

    .venv/bin/python bench/ab_hot_path.py --rounds 15
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_commit(commit: str, name: str) -> ModuleType:
    """Import the package as it was at *commit*, under the name *name*."""
    archive = subprocess.run(
        ["git", "archive", commit, "src/workpool"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    target = Path(tempfile.mkdtemp(prefix="workpool_ab_"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / "src" / "workpool").rename(target / name)
    sys.path.insert(0, str(target))
    return importlib.import_module(name)


async def noop(scope: Any, stopping: Any) -> None:
    """The no-op work function."""


async def one_run(
    package: ModuleType, items: int, consumers: int, capacity: int
) -> tuple[float, float]:
    """Seconds per item to enqueue *items* no-ops, run them and shut down: wall
    clock, and CPU time of the event loop's thread (which does all of the work for
    no-op items, and which other processes on a loaded machine do not inflate)."""
    started = time.perf_counter()
    cpu_started = time.thread_time()
    async with package.WorkerPool(consumers=consumers, capacity=capacity) as pool:
        enqueue = pool.enqueue
        for _ in range(items):
            await enqueue(noop)
    cpu = time.thread_time() - cpu_started
    elapsed = time.perf_counter() - started
    assert pool.report.succeeded == items, pool.report
    return elapsed / items, cpu / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="ccc5fe6")
    parser.add_argument("--after", default=None, help="a commit; default: this tree")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=1_000)
    args = parser.parse_args()

    if args.after is None:
        import workpool as after
    else:
        after = load_commit(args.after, "workpool_after")
    before = load_commit(args.before, "workpool_before")
    packages = {"before": before, "after": after}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {
        (backend, name): [] for backend in ("asyncio", "trio") for name in packages
    }
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
    for round_number in range(args.rounds):
        # Alternate the order so that neither side always runs on a warmer process.
        order = list(packages) if round_number % 2 == 0 else list(reversed(packages))
        for backend in ("asyncio", "trio"):
            for name in order:
                gc.collect()
                per_item = anyio.run(
                    one_run,
                    packages[name],
                    args.items,
                    args.consumers,
                    args.capacity,
                    backend=backend,
                )
                samples[backend, name].append(per_item)
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(
        f"{args.items:,} no-op items, {args.consumers} consumers, capacity {args.capacity:,}, "
        f"{args.rounds} rounds; median us per item (before = {args.before}, "
        f"after = {args.after or 'this tree'})"
    )
    for backend in ("asyncio", "trio"):
        for index, what in ((1, "cpu "), (0, "wall")):
            before_runs, after_runs = samples[backend, "before"], samples[backend, "after"]
            b = statistics.median(s[index] for s in before_runs) * 1e6
            a = statistics.median(s[index] for s in after_runs) * 1e6
            # Each round's own ratio: its two runs are next to each other in time.
            paired = statistics.median(
                x[index] / y[index] for x, y in zip(after_runs, before_runs, strict=True)
            )
            print(
                f"  {backend:8} {what}  before {b:6.3f}  after {a:6.3f}  "
                f"after/before {a / b:.3f}  paired {paired:.3f}"
            )


if __name__ == "__main__":
    main()
