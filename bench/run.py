"""Run the benchmark suites and write bench/RESULTS.md and the scenario 3 chart.

``make bench`` runs this. It runs ``pytest bench/`` with pytest-benchmark (each
scenario for workpool and its peers in the same run, grouped by scenario), keeps the
raw results as JSON, and turns them into one Markdown table per scenario with the
medians and the ratio to each peer, plus a PNG of throughput against consumers.

    python bench/run.py                      # run everything (about 5 minutes)
    python bench/run.py --from-json r.json   # only rewrite the report from results
    python bench/run.py -- -k "throughput"   # pass arguments on to pytest
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
CHART = BENCH / "io_scaling.png"

LIBRARIES = [
    "workpool",
    "anyio",
    "trio",
    "uvloop",
    "aiojobs",
    "taskiq",
    "starlette",
    "tenacity",
    "svcs",
    "pytest-benchmark",
    "matplotlib",
]

# Targets of issue 5, checked against this run.
TARGET_AIOJOBS = 3.0
TARGET_TASKIQ = 12.0
TARGET_RETRY = 1.15
TARGET_IO = 1.10
TARGET_TRIO = 1.30
TARGET_BYTES = 300.0


# -- running ---------------------------------------------------------------------------


#: the 1-minute load average before and after the run (other work on the machine
#: skews the ratios: they are only as good as the machine was quiet)
LOAD: dict[str, float] = {}


def run_suites(json_path: Path, pytest_args: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(BENCH),
        "-q",
        f"--benchmark-json={json_path}",
        "--benchmark-group-by=group",
        "--benchmark-sort=min",
        "--benchmark-columns=median,iqr,min,max,rounds",
        *pytest_args,
    ]
    print("$", " ".join(command), flush=True)
    with contextlib.suppress(OSError):
        LOAD["before"] = os.getloadavg()[0]
    status = subprocess.call(command, cwd=ROOT)
    with contextlib.suppress(OSError):
        LOAD["after"] = os.getloadavg()[0]
    return status


# -- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' (src modified)' if dirty else ''}"


def _commit(data: dict[str, Any]) -> str:
    info = data.get("commit_info") or {}
    if not info.get("id"):
        return _git_commit()
    return f"{info['id'][:7]}{' (with uncommitted changes)' if info.get('dirty') else ''}"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_section(data: dict[str, Any]) -> list[str]:
    info = data.get("machine_info", {})
    started = data.get("datetime", dt.datetime.now(dt.UTC).isoformat())
    lines = [
        "## Machine and versions",
        "",
        f"- run: {started[:19].replace('T', ' ')} UTC, workpool commit {_commit(data)}",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; memory {_memory()}",
        f"- OS: {platform.platform()}",
        f"- Python: {info.get('python_implementation', platform.python_implementation())} "
        f"{info.get('python_version', platform.python_version())} "
        f"({info.get('python_build', ['', ''])[1] if info.get('python_build') else ''})",
        "- libraries: " + ", ".join(f"{name} {_version(name)}" for name in LIBRARIES),
    ]
    if LOAD:
        lines.append(
            "- load average (1 min) before and after the run: "
            + ", ".join(f"{LOAD[k]:.2f}" for k in ("before", "after") if k in LOAD)
        )
    lines.append("")
    return lines


# -- formatting ------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_rate(per_second: float) -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k/s"
    return f"{per_second:.0f} /s"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


class Row:
    """One benchmark: a label (row) in a group (table)."""

    def __init__(self, bench: dict[str, Any]) -> None:
        self.group: str = bench["group"]
        self.extra: dict[str, Any] = bench["extra_info"]
        self.label: str = self.extra["label"]
        self.median: float = bench["stats"]["median"]
        self.iqr: float = bench["stats"]["iqr"]
        self.rounds: int = bench["stats"]["rounds"]
        self.items: int = self.extra["items"]

    @property
    def per_item(self) -> float:
        return self.median / self.items

    @property
    def rate(self) -> float:
        return self.items / self.median


def group_rows(data: dict[str, Any]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for bench in data["benchmarks"]:
        row = Row(bench)
        groups[row.group].append(row)
    return dict(sorted(groups.items(), key=lambda kv: _group_key(kv[0])))


def _group_key(group: str) -> tuple[str, int]:
    # "3 I/O-bound, 10 consumers": sort by scenario, then by the consumer count
    number = "".join(ch for ch in group.split(",")[-1] if ch.isdigit())
    return group.split(",")[0], int(number) if number else 0


def find(rows: list[Row], label: str) -> Row | None:
    return next((row for row in rows if row.label == label), None)


# -- the report ------------------------------------------------------------------------


def throughput_table(rows: list[Row], reference: str = "workpool") -> list[str]:
    ref = find(rows, reference)
    header = [
        "implementation",
        "median per round",
        "per item",
        "items/s",
        f"ratio (time ÷ {reference})",
    ]
    body = []
    for row in sorted(rows, key=lambda r: r.median):
        ratio = fmt_ratio(row.median / ref.median) if ref is not None else "n/a"
        name = f"**{row.label}**" if row.label == reference else row.label
        body.append([name, fmt_time(row.median), fmt_time(row.per_item), fmt_rate(row.rate), ratio])
    return table(header, body)


def ideal_table(rows: list[Row], reference: str = "workpool") -> list[str]:
    ref = find(rows, reference)
    ideal = rows[0].extra["ideal"]
    header = [
        "implementation",
        "median per round",
        "items/s",
        "ratio to ideal",
        f"ratio (time ÷ {reference})",
    ]
    body = [["ideal", fmt_time(ideal), fmt_rate(rows[0].items / ideal), "1.00x", ""]]
    for row in sorted(rows, key=lambda r: r.median):
        ratio = fmt_ratio(row.median / ref.median) if ref is not None else "n/a"
        name = f"**{row.label}**" if row.label == reference else row.label
        body.append(
            [name, fmt_time(row.median), fmt_rate(row.rate), fmt_ratio(row.median / ideal), ratio]
        )
    return table(header, body)


def backends_table(rows: list[Row]) -> list[str]:
    header = ["implementation", "backend", "median per round", "per item", "ratio to asyncio"]
    body = []
    for row in sorted(rows, key=lambda r: (r.extra["impl"] != "workpool", r.extra["impl"])):
        base = next(
            (
                r
                for r in rows
                if r.extra["impl"] == row.extra["impl"] and r.extra["backend"] == "asyncio"
            ),
            None,
        )
        ratio = fmt_ratio(row.median / base.median) if base is not None else "n/a"
        body.append(
            [
                row.extra["impl"],
                row.extra["backend"],
                fmt_time(row.median),
                fmt_time(row.per_item),
                ratio,
            ]
        )
    body.sort(key=lambda r: (r[0] != "workpool", r[0], ["asyncio", "uvloop", "trio"].index(r[1])))
    return table(header, body)


def memory_table(rows: list[Row]) -> list[str]:
    ref = find(rows, "workpool")
    header = [
        "implementation",
        "bytes per queued item",
        "ratio (bytes ÷ workpool)",
        "time to queue 100,000",
        "per enqueue",
    ]
    body = []
    for row in sorted(rows, key=lambda r: r.extra["bytes_per_item"]):
        size = row.extra["bytes_per_item"]
        ratio = fmt_ratio(size / ref.extra["bytes_per_item"]) if ref is not None else "n/a"
        name = f"**{row.label}**" if row.label == "workpool" else row.label
        body.append([name, f"{size:.0f}", ratio, fmt_time(row.median), fmt_time(row.per_item)])
    return table(header, body)


def latency_table(rows: list[Row]) -> list[str]:
    ref = find(rows, "workpool")
    header = ["implementation", "p50", "p99", "max", "ratio p50 (÷ workpool)", "ratio p99"]
    body = []
    for row in sorted(rows, key=lambda r: r.extra["latency_p50"]):
        extra = row.extra
        p50 = p99 = "n/a"
        if ref is not None:
            p50 = fmt_ratio(extra["latency_p50"] / ref.extra["latency_p50"])
            p99 = fmt_ratio(extra["latency_p99"] / ref.extra["latency_p99"])
        name = f"**{row.label}**" if row.label == "workpool" else row.label
        body.append(
            [
                name,
                fmt_time(extra["latency_p50"]),
                fmt_time(extra["latency_p99"]),
                fmt_time(extra["latency_max"]),
                p50,
                p99,
            ]
        )
    return table(header, body)


NOTES = {
    "1": "10,000 no-op async items, 4 consumers, capacity 1000; a round builds the pool "
    "(or scheduler, broker, queue), pushes the items through and stops it. workpool "
    "runs its full lifecycle for every item (session, a scope per attempt, "
    "`current_scope()`, a context of its own, stats and timings). Starlette runs its "
    "tasks one after another; taskiq starts a task per `kiq()`.",
    "1b": "Scenario 1 with 100,000 items a round, through the same capacity of 1000 "
    "and 4 consumers, for workpool and aiojobs side by side (and the floor), at least 5 "
    "rounds: what grows with the number of items shows here.",
    "2a": "The same items with a retry policy attached (3 attempts, no wait), all "
    "succeeding. workpool's policy is attached with `@retry_policy`; aiojobs wraps each "
    "job in tenacity's `AsyncRetrying`; taskiq uses `SimpleRetryMiddleware`; the loops "
    "retry by hand.",
    "2b": "Every item fails once, then succeeds on its second attempt.",
    "3": "2,000 items of `await anyio.sleep(0.01)`; the ideal is items x 10 ms ÷ "
    "consumers. *bare anyio tasks* are N tasks sleeping their share of the items in "
    "turn, with no queue: the yardstick for overhead (timer overshoot is in every row).",
    "4": "400 items of `time.sleep(0.005)`, 40 threads at a time (workpool: 40 consumers "
    "and its default thread limiter of 40); the ideal is 400 x 5 ms ÷ 40.",
    "5": "Scenario 1 on each backend; the anyio stream floor shows what the backend itself costs.",
    "6": "100,000 no-op items queued and not started (workpool: enqueued before the "
    "pool starts), measured with `tracemalloc`: what the filled queue holds beyond the "
    "empty one. The time is the fill alone, without tracing.",
    "7": "4 consumers, items of 2 ms, one enqueued every 1 ms (half of what the pool can "
    "serve), 1,000 items a round, 3 rounds; latency from just before the enqueue call "
    "to the first line of the work.",
    "8": "10,000 no-op items queued before the consumers start; the round is the drain "
    "(workpool: `async with pool: pass` on a pool filled before it started).",
}


def scenario_section(group: str, rows: list[Row]) -> list[str]:
    key = group.split()[0]
    lines = [f"### {group}", ""]
    note = NOTES.get(key)
    if note and not (key == "3" and not group.endswith(" 1 consumer")):
        lines += [note, ""]
    if key == "3" or key == "4":
        lines += ideal_table(rows)
    elif key == "5":
        lines += backends_table(rows)
    elif key == "6":
        lines += memory_table(rows)
    elif key == "7":
        lines += latency_table(rows)
    else:
        lines += throughput_table(rows)
    return lines


def targets_section(groups: dict[str, list[Row]]) -> tuple[list[str], list[str]]:
    """The targets table, and the headline sentences."""
    rows: list[list[str]] = []
    headline: list[str] = []

    def check(name: str, value: float | None, goal: str, met: bool | None) -> None:
        shown = (
            "n/a" if value is None else (f"{value:.0f}" if "bytes" in name else fmt_ratio(value))
        )
        verdict = "not run" if met is None else ("met" if met else "**missed**")
        rows.append([name, goal, shown, verdict])

    def group_starting(prefix: str) -> list[Row]:
        return next((r for g, r in groups.items() if g.startswith(prefix)), [])

    def ratio(rows_: list[Row], num: str, den: str) -> float | None:
        a, b = find(rows_, num), find(rows_, den)
        return a.median / b.median if a and b else None

    noop = group_starting("1 ")
    aiojobs = ratio(noop, "aiojobs", "workpool")
    taskiq = ratio(noop, "taskiq", "workpool")
    check(
        "no-op throughput vs aiojobs",
        aiojobs,
        f">= {TARGET_AIOJOBS:g}x",
        aiojobs and aiojobs >= TARGET_AIOJOBS,
    )
    check(
        "no-op throughput vs taskiq",
        taskiq,
        f">= {TARGET_TASKIQ:g}x",
        taskiq and taskiq >= TARGET_TASKIQ,
    )
    aiojobs_large = ratio(group_starting("1b"), "aiojobs", "workpool")
    check(
        "no-op throughput vs aiojobs, 100k items",
        aiojobs_large,
        f">= {TARGET_AIOJOBS:g}x",
        aiojobs_large and aiojobs_large >= TARGET_AIOJOBS,
    )
    retry = ratio(group_starting("2a"), "workpool", "workpool, no policy")
    check(
        "retry policy, success path (÷ no policy)",
        retry,
        f"<= {TARGET_RETRY:g}x",
        retry and retry <= TARGET_RETRY,
    )
    io = ratio(group_starting("3 I/O-bound, 200"), "workpool", "bare anyio tasks")
    check(
        "I/O-bound, 200 consumers (÷ bare tasks)", io, f"<= {TARGET_IO:g}x", io and io <= TARGET_IO
    )
    backends = group_starting("5")
    trio = asyncio_ = None
    for row in backends:
        if row.extra.get("impl") == "workpool":
            if row.extra["backend"] == "trio":
                trio = row
            elif row.extra["backend"] == "asyncio":
                asyncio_ = row
    trio_ratio = trio.median / asyncio_.median if trio and asyncio_ else None
    check(
        "trio (÷ asyncio)",
        trio_ratio,
        f"<= {TARGET_TRIO:g}x",
        trio_ratio and trio_ratio <= TARGET_TRIO,
    )
    memory = find(group_starting("6"), "workpool")
    size = memory.extra["bytes_per_item"] if memory else None
    check("bytes per queued item", size, f"<= {TARGET_BYTES:g}", size and size <= TARGET_BYTES)
    for row in rows:
        if row[2] == "n/a":
            row[3] = "not run"

    wp = find(noop, "workpool")
    if wp is not None and aiojobs and taskiq:
        headline.append(
            f"On {os.cpu_count()} cores, workpool runs no-op items at "
            f"{fmt_time(wp.per_item)} each ({fmt_rate(wp.rate)}) with its full lifecycle "
            f"(session, DI scope, `current_scope()`, stats): {aiojobs:.1f}x the throughput "
            f"of aiojobs and {taskiq:.1f}x that of taskiq's InMemoryBroker"
            + (f" ({aiojobs_large:.1f}x aiojobs at 100,000 items)." if aiojobs_large else ".")
        )
    parts = []
    if retry:
        parts.append(f"a retry policy on the success path takes {retry:.2f}x the time without one")
    if io:
        parts.append(f"200 I/O-bound consumers run within {io:.2f}x of bare anyio tasks")
    if trio_ratio:
        parts.append(f"trio runs at {trio_ratio:.2f}x asyncio's time")
    if size:
        parts.append(f"a queued item takes {size:.0f} bytes")
    if parts:
        text = "; ".join(parts)
        headline.append(text[0].upper() + text[1:] + ".")
    return table(["target", "goal", "this run", "verdict"], rows), headline


def write_report(data: dict[str, Any]) -> None:
    groups = group_rows(data)
    targets, headline = targets_section(groups)
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand. Medians of "
        "pytest-benchmark rounds, all from this one run; a ratio is a row's time "
        "divided by workpool's (above 1: workpool is faster). See "
        "[README.md](README.md) for what each scenario measures and how each peer is used. "
        "The hot path's A/B runs (instruction counts, workpool and aiojobs interleaved in "
        "one process) are in [RESULTS-hotpath.md](RESULTS-hotpath.md), the SQLite "
        "channel's in [RESULTS-sqlite.md](RESULTS-sqlite.md).",
        "",
        *machine_section(data),
        "## Headline",
        "",
        *(f"{sentence}" for sentence in headline),
        "",
        *targets,
        "## Scenarios",
        "",
    ]
    for group, rows in groups.items():
        lines += scenario_section(group, rows)
    if CHART.exists():
        lines += [
            "### Chart: I/O-bound throughput against consumers",
            "",
            f"![throughput against consumers]({CHART.name})",
            "",
        ]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n" + _kept_sections(), encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def _kept_sections() -> str:
    """The "Redis" section written by redis_peers.py, kept as it is."""
    if not RESULTS.exists():
        return ""
    _, found, after = RESULTS.read_text(encoding="utf-8").partition("\n## Redis\n")
    return f"\n## Redis\n{after.partition(chr(10) + '## ')[0].rstrip()}\n" if found else ""


def write_chart(data: dict[str, Any]) -> None:
    groups = {g: r for g, r in group_rows(data).items() if g.startswith("3 ")}
    if not groups:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    ideal: list[tuple[int, float]] = []
    for rows in groups.values():
        for row in rows:
            consumers = row.extra["consumers"]
            series[row.label].append((consumers, row.rate, row.median / row.extra["ideal"]))
        ideal.append((rows[0].extra["consumers"], rows[0].items / rows[0].extra["ideal"]))
    fig, (rate_ax, over_ax) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    xs, ys = zip(*sorted(ideal), strict=True)
    rate_ax.plot(xs, ys, "k--", linewidth=1.2, label="ideal (consumers ÷ 10 ms)")
    over_ax.axhline(1.0, color="k", linestyle="--", linewidth=1.2, label="ideal")
    markers = "osD^v<>"
    for number, (label, points) in enumerate(
        sorted(series.items(), key=lambda kv: kv[0] != "workpool")
    ):
        points.sort()
        xs = [p[0] for p in points]
        bold = label == "workpool"
        style = {
            "marker": markers[number % len(markers)],
            "linewidth": 2.4 if bold else 1.2,
            "markersize": 6 if bold else 4,
            "label": label,
            "zorder": 3 if bold else 2,
        }
        rate_ax.plot(xs, [p[1] for p in points], **style)
        over_ax.plot(xs, [p[2] for p in points], **style)
    for ax in (rate_ax, over_ax):
        ax.set_xscale("log")
        ax.set_xlabel("consumers")
        ax.grid(True, which="both", alpha=0.3)
    rate_ax.set_yscale("log")
    rate_ax.set_ylabel("items per second")
    rate_ax.set_title("throughput")
    rate_ax.legend(fontsize=8)
    over_ax.set_ylabel("time ÷ ideal time")
    over_ax.set_title("distance from the ideal (timer overshoot + overhead)")
    fig.suptitle("I/O-bound items (2,000 x sleep 10 ms) against consumers")
    fig.tight_layout()
    fig.savefig(CHART)
    plt.close(fig)
    print(f"wrote {CHART.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--from-json", type=Path, help="write the report from these results, run nothing"
    )
    parser.add_argument("--json", type=Path, help="keep the raw pytest-benchmark results here")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)

    if args.from_json is not None:
        data = json.loads(args.from_json.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            json_path = args.json or Path(tmp) / "results.json"
            status = run_suites(json_path, args.pytest_args)
            if status != 0:
                print(f"the benchmark suites failed (pytest exit {status})", file=sys.stderr)
                return status
            data = json.loads(json_path.read_text())
    write_chart(data)
    write_report(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
