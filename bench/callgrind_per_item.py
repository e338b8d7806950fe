"""Instructions per no-op item, counted by callgrind (independent of the machine's load).

Runs N and 2N no-op items (4 consumers, capacity 1,000, asyncio) in two processes
under ``valgrind --tool=callgrind``; the difference of the two totals over N is the
cost of one more item, start-up and imports cancelling out. ``--src`` points at
another copy of the package's parent directory (e.g. a ``git archive`` of a commit).

    .venv/bin/python bench/callgrind_per_item.py --items 20000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent


async def noop(scope: object, stopping: object) -> None:
    """The no-op work function."""


async def run(items: int) -> None:
    import workpool

    async with workpool.WorkerPool(consumers=4, capacity=1_000) as pool:
        enqueue = pool.enqueue
        for _ in range(items):
            await enqueue(noop)
    assert pool.report is not None
    assert pool.report.succeeded == items


def count(items: int, src: str) -> int:
    """Instructions of one process running *items* no-op items."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            str(items),
            "--src",
            src,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found is not None, result.stderr
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--src", default=str(ROOT / "src"))
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.path.insert(0, args.src)
        anyio.run(run, args.child, backend="asyncio")
        return
    small = count(args.items, args.src)
    large = count(2 * args.items, args.src)
    print(f"{args.items}: {small:,}  {2 * args.items}: {large:,}")
    print(f"instructions per item: {(large - small) / args.items:,.0f}")


if __name__ == "__main__":
    main()
