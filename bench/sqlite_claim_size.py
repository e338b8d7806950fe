"""What the SQLite channel's throughput would be if a claim took more items: an A/B.

SqliteChannel claims as many items as there are consumers waiting (about 4 for 4
consumers), so 10,000 no-op items take about 2,500 claims, each a trip through the
connection thread and a commit. This experiment wraps the channel's claim operation
(``workpool._sqlite_sql.claim``) so that a claim asks for at least ``N`` items, and
runs the throughput round of ``sqlite_throughput.py`` for each ``N`` in interleaved
rounds; the extra items wait claimed (leases renewed) in the channel's ready queue,
as a prefetch would keep them. Figures: medians of items/s (wall) and items per
CPU-second (process CPU time, every thread), and the number of store batches.

    .venv/bin/python bench/sqlite_claim_size.py --rounds 3 --sizes 0,16,64,256
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from sqlite_throughput import channel_round
from workpool import _sqlite_sql as sql
from workpool import _sqlite_store as store

_claim = sql.claim
_execute = store.SqliteStore._execute
_batches = Counter[str]()
_size = [0]


def claim_at_least(batch: sql.Batch, count: int, lease: float) -> list[sql.Claimed]:
    """The channel's claim, asking for at least the size under test."""
    return _claim(batch, max(count, _size[0]), lease)


def counting_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
    """The store's batch, counted."""
    _batches["batches"] += 1
    return _execute(self, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--sizes", default="0,16,64,256", help="0: the channel as it is")
    parser.add_argument("--backend", default="asyncio")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    claim_at_least.__name__ = "claim"
    sql.claim = claim_at_least  # type: ignore[assignment]
    store.SqliteStore._execute = counting_execute  # type: ignore[method-assign]

    samples: dict[int, list[tuple[float, float, int]]] = {size: [] for size in sizes}
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores", flush=True)
    for round_number in range(args.rounds):
        shift = round_number % len(sizes)
        for size in sizes[shift:] + sizes[:shift]:
            _size[0] = size
            _batches.clear()
            with tempfile.TemporaryDirectory(prefix="workpool_sqlite_bench_") as tmp:
                gc.collect()
                wall, cpu = anyio.run(
                    channel_round,
                    Path(tmp) / "jobs.db",
                    "normal",
                    args.items,
                    args.producers,
                    backend=args.backend,
                )
            samples[size].append((wall, cpu, _batches["batches"]))
            print(
                f"  round {round_number + 1}: claims of at least {size}: "
                f"{args.items / wall:,.0f}/s, {args.items / cpu:,.0f} per CPU-s, "
                f"{_batches['batches']:,} batches",
                flush=True,
            )
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(
        f"\n{args.items:,} no-op tasks, 4 consumers, {args.producers} producers, "
        f"{args.backend}, {args.rounds} rounds (medians)\n"
    )
    print("| claim asks for at least | items/s | items per CPU-s | store batches |")
    print("| ---: | ---: | ---: | ---: |")
    for size, rows in samples.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        batches = statistics.median(r[2] for r in rows)
        label = "as is (waiting consumers)" if size == 0 else str(size)
        print(f"| {label} | {args.items / wall:,.0f} | {args.items / cpu:,.0f} | {batches:,.0f} |")


if __name__ == "__main__":
    main()
