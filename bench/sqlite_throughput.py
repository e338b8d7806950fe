"""SqliteChannel throughput and latency, next to a raw sqlite3 ceiling, in one run.

Rounds are interleaved (each round runs every case once, in a rotated order) and
the figures are medians over the rounds; every round uses a fresh file in a
temporary directory (WAL, the ``synchronous`` setting of the case).

- **raw sqlite3 ceiling**: one thread, the channel's own statements (insert, claim
  with a lease, delete), each a commit of 100 rows: 100 inserts, one claim of 100,
  100 deletes, and again, for all items. Rows per second through the whole life.
- **channel**: ``WorkerPool(channel=SqliteChannel(...), consumers=4)`` and 10,000
  no-op tasks enqueued by concurrent producers (``--producers``, each awaiting its
  own ``enqueue``, as request handlers would); from the first enqueue until the
  pool has shut down (the last acknowledgement is in the file). Items per second,
  and the ratio to the raw ceiling of the same round.
- **latency**: producers and consumers together, one item enqueued every
  ``1 / --rate`` seconds on an even schedule (each by a task of its own, so that
  a slow commit does not delay the next one); latency from just before the
  ``enqueue`` call to the first line of the task; p50/p99 over every round.
- **synchronous=full**: the channel and the ceiling again with ``synchronous=full``.

    .venv/bin/python bench/sqlite_throughput.py --rounds 5 --write
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from _support import percentile
from workpool import SqliteChannel, WorkerPool, task
from workpool import _sqlite_sql as sql
from workpool._task import encode_call

if TYPE_CHECKING:
    from collections.abc import Callable

    from workpool import Scope, StopToken

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-sqlite.md"
MARKER = "<!-- analysis: kept when the figures above are rewritten -->"

ITEMS = 10_000
CONSUMERS = 4
BATCH = 100
TARGET = 5_000.0
GOAL = 10_000.0
RATIO_TARGET = 0.10

_latencies: list[float] = []
_ran = [0]  # no-op tasks run (a round waits for all of them, then shuts the pool down)


@task(name="bench.sqlite.noop")
async def noop(scope: Scope, stopping: StopToken) -> None:
    """Nothing but a count: the channel is what is measured."""
    _ran[0] += 1


@task(name="bench.sqlite.stamp")
async def stamp(scope: Scope, stopping: StopToken, enqueued: float) -> None:
    """Record the enqueue-to-start latency (same process: one perf_counter clock)."""
    _latencies.append(time.perf_counter() - enqueued)


# -- the raw sqlite3 ceiling ------------------------------------------------------------

# The channel's own schema and statements, so that the ceiling is for the same SQL.
RAW_SCHEMA = sql.SCHEMA
RAW_INSERT = sql._INSERT
RAW_CLAIM = sql._CLAIM
RAW_DELETE = sql._ACK


def raw_round(path: Path, synchronous: str, items: int) -> tuple[float, float]:
    """Seconds (wall, process CPU) for *items* rows through insert, claim and delete,
    commits of BATCH."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.executescript(f"BEGIN IMMEDIATE;\n{RAW_SCHEMA}\nCOMMIT;")
    payload = encode_call(noop.bind(), max_bytes=1 << 20).decode()
    owner = str(uuid.uuid4())
    execute = connection.execute
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(0, items, BATCH):
        now = time.time()
        rows = [
            (str(uuid.uuid4()), "default", noop.name, payload, None, None, now, now, None, now)
            for _ in range(BATCH)
        ]
        execute("BEGIN IMMEDIATE")
        connection.executemany(RAW_INSERT, rows)
        execute("COMMIT")
        now = time.time()
        execute("BEGIN IMMEDIATE")
        claimed = execute(RAW_CLAIM, (now + 30.0, owner, "default", now, BATCH)).fetchall()
        execute("COMMIT")
        assert len(claimed) == BATCH, len(claimed)
        execute("BEGIN IMMEDIATE")
        # RETURNING seq, id, name, payload, key, timeout, attempts, deliveries, ...
        connection.executemany(RAW_DELETE, [(row[1], owner, row[7]) for row in claimed])
        execute("COMMIT")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    (left,) = execute("SELECT count(*) FROM workpool_messages").fetchone()
    assert left == 0, left
    connection.close()
    return elapsed, cpu


# -- the channel ------------------------------------------------------------------------


async def channel_round(
    path: Path, synchronous: str, items: int, producers: int
) -> tuple[float, float]:
    """Seconds (wall, process CPU: every thread) from the first enqueue to the pool's
    shutdown, *items* no-op tasks."""
    channel = SqliteChannel(str(path), synchronous=synchronous)
    pool = WorkerPool(channel=channel, tasks=[noop], consumers=CONSUMERS)
    call = noop.bind()
    share, extra = divmod(items, producers)

    async def produce(count: int) -> None:
        enqueue = pool.enqueue
        for _ in range(count):
            await enqueue(call)

    _ran[0] = 0
    async with pool:
        started, cpu_started = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as task_group:
            for index in range(producers):
                task_group.start_soon(produce, share + (index < extra))
        while _ran[0] < items:  # (pool.stats() would cost more than a no-op item)
            await anyio.sleep(0.002)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stats = pool.stats()
    assert stats.succeeded == items, stats
    assert stats.delivered == items, stats
    return elapsed, cpu


async def latency_round(path: Path, synchronous: str, rate: float, items: int) -> None:
    """*items* stamps, one every ``1 / rate`` s, each enqueued by a task of its own."""
    channel = SqliteChannel(str(path), synchronous=synchronous)
    pool = WorkerPool(channel=channel, tasks=[stamp], consumers=CONSUMERS)
    interval = 1.0 / rate
    before = len(_latencies)
    perf_counter = time.perf_counter

    async def submit() -> None:
        await pool.enqueue(stamp.bind(perf_counter()))

    async with pool:
        async with anyio.create_task_group() as task_group:
            start = perf_counter()
            for index in range(items):
                delay = start + index * interval - perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                task_group.start_soon(submit)
        while len(_latencies) - before < items:
            await anyio.sleep(0.005)


# -- the run ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--rate", type=float, default=500.0, help="latency: items/s")
    parser.add_argument("--latency-items", type=int, default=2000)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--no-full", action="store_true", help="skip synchronous=full")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    backends = args.backends.split(",")
    modes = ["normal"] if args.no_full else ["normal", "full"]

    cases: dict[str, Callable[[Path], tuple[float, float]]] = {}
    for mode in modes:
        cases[f"raw sqlite3, synchronous={mode}"] = lambda path, mode=mode: raw_round(
            path, mode, args.items
        )
        for backend in backends if mode == "normal" else backends[:1]:
            cases[f"SqliteChannel {backend}, synchronous={mode}"] = (
                lambda path, mode=mode, backend=backend: anyio.run(
                    channel_round, path, mode, args.items, args.producers, backend=backend
                )
            )
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    latencies: dict[str, list[float]] = {backend: [] for backend in backends}

    load_before = os.getloadavg()
    print(f"load before: {load_before[0]:.2f} (1-min), {os.cpu_count()} cores", flush=True)
    labels = list(cases)
    for round_number in range(args.rounds):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            with tempfile.TemporaryDirectory(prefix="workpool_sqlite_bench_") as tmp:
                gc.collect()
                elapsed, cpu = cases[label](Path(tmp) / "jobs.db")
            samples[label].append((elapsed, cpu))
            print(
                f"  round {round_number + 1}: {label}: {args.items / elapsed:,.0f}/s, "
                f"{args.items / cpu:,.0f} per CPU-s",
                flush=True,
            )
        for backend in backends:
            with tempfile.TemporaryDirectory(prefix="workpool_sqlite_bench_") as tmp:
                _latencies.clear()
                anyio.run(
                    latency_round,
                    Path(tmp) / "jobs.db",
                    "normal",
                    args.rate,
                    args.latency_items,
                    backend=backend,
                )
                latencies[backend].extend(_latencies)
    load_after = os.getloadavg()
    print(f"load after: {load_after[0]:.2f} (1-min)")

    rate = {label: args.items / statistics.median(w for w, _ in s) for label, s in samples.items()}
    per_cpu = {
        label: args.items / statistics.median(c for _, c in s) for label, s in samples.items()
    }
    lines = report(args, rate, per_cpu, latencies, load_before, load_after, backends, modes)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        # A hand-written part (the profile and what to do about it) below the marker
        # is kept.
        old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
        if MARKER in old:
            text += "\n" + old[old.index(MARKER) :]
        RESULTS.write_text(text, encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


def report(
    args: Any,
    rate: dict[str, float],
    per_cpu: dict[str, float],
    latencies: dict[str, list[float]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    backends: list[str],
    modes: list[str],
) -> list[str]:
    """The markdown of RESULTS-sqlite.md."""
    raw_normal = rate["raw sqlite3, synchronous=normal"]
    lines = [
        "# SqliteChannel: throughput and latency",
        "",
        "Written by `bench/sqlite_throughput.py` "
        f"(`--rounds {args.rounds} --items {args.items} --producers {args.producers} "
        f"--rate {args.rate:g} --latency-items {args.latency_items}`). "
        f"{args.rounds} interleaved rounds, medians; a fresh file per round, WAL.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.system()}. "
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}.",
        "",
        f"## Throughput: {args.items:,} no-op tasks, {CONSUMERS} consumers",
        "",
        "From the first enqueue to the last acknowledgement (the pool shut down); "
        f"{args.producers} concurrent producers. The raw ceiling runs the same statements "
        f"in one thread, commits of {BATCH} rows.",
        "",
        "Items per CPU-second (process CPU time, all threads) is what a loaded machine "
        "moves least.",
        "",
        "| case | items/s | / raw ceiling | items per CPU-s | / raw ceiling |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, value in rate.items():
        ceiling = f"raw sqlite3, synchronous={label.rsplit('=', 1)[1]}"
        lines.append(
            f"| {label} | {value:,.0f} | {value / rate[ceiling]:.3f} | "
            f"{per_cpu[label]:,.0f} | {per_cpu[label] / per_cpu[ceiling]:.3f} |"
        )
    channel = rate[f"SqliteChannel {backends[0]}, synchronous=normal"]
    lines += [
        "",
        f"Targets (issue 11): at least {TARGET:,.0f} items/s "
        f"({'met' if channel >= TARGET else 'NOT met'}: {channel:,.0f}), goal "
        f"{GOAL:,.0f} ({'met' if channel >= GOAL else 'not met'}); at least "
        f"{RATIO_TARGET:.2f} of the raw ceiling "
        f"({'met' if channel / raw_normal >= RATIO_TARGET else 'NOT met'}: "
        f"{channel / raw_normal:.3f}).",
        "",
    ]
    if "full" in modes:
        full = rate[f"SqliteChannel {backends[0]}, synchronous=full"]
        raw_full = rate["raw sqlite3, synchronous=full"]
        lines += [
            "## The cost of synchronous=full",
            "",
            f"Channel ({backends[0]}): {full:,.0f} items/s against {channel:,.0f} with "
            f"normal: {channel / full:.2f}x the time per item. Raw ceiling: "
            f"{raw_full:,.0f} rows/s against {raw_normal:,.0f}: "
            f"{raw_normal / raw_full:.2f}x.",
            "",
        ]
    lines += [
        f"## Enqueue-to-start latency, {args.rate:,.0f} items/s steady",
        "",
        f"Producers and consumers together: one item every {1000 / args.rate:g} ms, each "
        f"enqueued by a task of its own, {CONSUMERS} consumers, synchronous=normal; from "
        "just before `enqueue` to the first line of the task, over "
        f"{args.rounds} x {args.latency_items:,} items.",
        "",
        "| backend | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for backend, samples in latencies.items():
        lines.append(
            f"| {backend} | {percentile(samples, 0.5) * 1000:.2f} | "
            f"{percentile(samples, 0.99) * 1000:.2f} | {max(samples) * 1000:.2f} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
