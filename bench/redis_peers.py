"""Redis: workpool's RedisChannel against arq, saq, taskiq-redis and streaq.

Not a pytest suite (``make bench`` does not run it): it needs the Redis server on
127.0.0.1:6379 and takes a few minutes. It writes the "Redis" section of
bench/RESULTS.md and bench/redis_peers.png, and leaves the rest of RESULTS.md as
it is.

    python bench/redis_peers.py                    # everything (about 4 minutes)
    python bench/redis_peers.py --rounds 3 --only workpool --only saq
    python bench/redis_peers.py --json r.json      # keep the raw figures
    python bench/redis_peers.py --from-json r.json # rewrite the section only

Throughput: 10,000 no-op tasks through one worker with 16 consumers, timed from the
first enqueue to the last task's run. The worker runs in this process, on the
producer's event loop; 16 producer tasks enqueue one task at a time each (the
benchmarks of saq and streaq use 20 and 32), except the rows marked bulk (one
pipelined call). Each round is its own event loop (``anyio.run``, outside the timed
part) on a fresh queue; the rows take turns, round after round, after one untimed
warm-up round each. Latency: one task every 2 ms on an even schedule (500 tasks/s),
from just before the enqueue call to the first line of the task.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis_peers import (
    CEILING,
    CONSUMERS,
    HOST,
    IMPLS,
    PORT,
    WORKPOOL,
    Impl,
    latency_round,
    throughput_round,
    workpool_available,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
CHART = BENCH / "redis_peers.png"
HEADING = "## Redis"

LIBRARIES = [
    "workpool",
    "coredis",
    "anyio",
    "trio",
    "arq",
    "saq",
    "taskiq",
    "taskiq-redis",
    "streaq",
    "redis",
]

# Targets of issue 12.
TARGET_PEER = 2.0
GOAL_PEER = 3.0
TARGET_CEILING = 0.3
TARGET_TRIO = 1.3


# -- running -----------------------------------------------------------------------------


def redis_version() -> str:
    async def ask() -> str:
        import coredis

        client: coredis.Redis[str] = coredis.Redis(HOST, PORT, decode_responses=True)
        async with client:
            info = await client.info("server")
        return str(info.get("redis_version", "unknown"))

    try:
        return anyio.run(ask)
    except Exception as exc:  # reported, not raised: the run says why it stops
        raise SystemExit(f"no Redis server on {HOST}:{PORT} ({exc})") from exc


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    impls = [impl for impl in IMPLS if not args.only or any(o in impl.label for o in args.only)]
    missing = workpool_available()
    if missing is not None:
        print(f"skipping workpool's rows: {missing}", file=sys.stderr)
        impls = [impl for impl in impls if impl.peer or impl.label.startswith(CEILING)]
    data: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "redis": redis_version(),
        "load_before": load_average(),
        "items": args.items,
        "producers": args.producers,
        "consumers": CONSUMERS,
        "latency_items": args.latency_items,
        "latency_rate": args.latency_rate,
        "throughput": {impl.label: [] for impl in impls},
        "cpu": {impl.label: [] for impl in impls},
        "latency": {},
        "rows": {
            impl.label: {
                "backend": impl.backend,
                "bulk": impl.bulk,
                "peer": impl.peer,
                "note": impl.note,
            }
            for impl in impls
        },
    }

    def throughput(impl: Impl, items: int = args.items) -> tuple[float, float]:
        result: tuple[float, float] = anyio.run(
            partial(throughput_round, impl, items, args.producers, args.timeout),
            backend=impl.backend,
        )
        return result

    for impl in impls:  # warm-up: imports, scripts loaded, connections made once
        elapsed, cpu = throughput(impl, args.warmup_items)
        print(f"warm-up {impl.label}: {elapsed:.3f} s (CPU {cpu:.3f} s)", flush=True)
    for number in range(1, args.rounds + 1):
        for impl in impls if number % 2 else reversed(impls):
            elapsed, cpu = throughput(impl)
            data["throughput"][impl.label].append(elapsed)
            data["cpu"][impl.label].append(cpu)
            print(
                f"round {number} {impl.label}: {elapsed:.3f} s "
                f"({args.items / elapsed:,.0f}/s), CPU {cpu:.3f} s",
                flush=True,
            )
    if args.latency_rounds:
        latency_impls = [impl for impl in impls if not impl.bulk or impl.label.startswith(CEILING)]
        samples: dict[str, list[float]] = {impl.label: [] for impl in latency_impls}
        for number in range(1, args.latency_rounds + 1):
            for impl in latency_impls:
                got = anyio.run(
                    partial(
                        latency_round, impl, args.latency_items, args.latency_rate, args.timeout
                    ),
                    backend=impl.backend,
                )
                samples[impl.label] += got
                print(
                    f"latency round {number} {impl.label}: p50 "
                    f"{percentile(got, 0.5) * 1e3:.2f} ms, p99 {percentile(got, 0.99) * 1e3:.2f} ms",
                    flush=True,
                )
        data["latency"] = {
            label: {
                "p50": percentile(values, 0.50),
                "p99": percentile(values, 0.99),
                "max": max(values),
                "n": len(values),
            }
            for label, values in samples.items()
        }
    data["load_after"] = load_average()
    data["uptime"] = _uptime()
    data["versions"] = {name: _version(name) for name in LIBRARIES}
    data["machine"] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }
    return data


def merge(runs: list[dict[str, Any]], *, replace: bool = False) -> dict[str, Any]:
    """Several runs as one: their rounds together (or, with *replace*, a later run's
    rows instead of an earlier run's: the rows it did not measure are kept, marked);
    the load before the first and after the last."""
    if replace:
        data = dict(runs[-1])
        data["earlier"] = []
        measured = set(data["throughput"])
        for run in runs[:-1]:
            for key in ("throughput", "cpu", "latency", "rows"):
                for label, value in run.get(key, {}).items():
                    if label not in measured:
                        data.setdefault(key, {})
                        data[key] = {**data[key], label: value}
                        if key == "throughput":
                            data["earlier"].append(label)
            data["earlier_run"] = f"{run['started'][:16].replace('T', ' ')} UTC, {run['commit']}"
        return data
    data = dict(runs[0])
    data["runs"] = len(runs)
    for key in ("throughput", "cpu"):
        data[key] = {label: [] for label in data.get(key, {})}
        for run in runs:
            for label, values in run.get(key, {}).items():
                data[key].setdefault(label, []).extend(values)
    for run in runs[1:]:
        data["rows"] = {**data["rows"], **run["rows"]}
        if run.get("latency"):
            data["latency"] = {**data.get("latency", {}), **run["latency"]}
    data["load_after"], data["uptime"] = runs[-1]["load_after"], runs[-1]["uptime"]
    if len(runs) > 1:
        data["load_between"] = [run["load_after"] for run in runs[:-1]]
    return data


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (the same as bench/_support.py)."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# -- machine -------------------------------------------------------------------------------


def _uptime() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    return "unknown"


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return "unknown"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# -- the report ------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_rate(per_second: float) -> str:
    return f"{per_second / 1e3:.1f} k/s" if per_second >= 1e3 else f"{per_second:.0f} /s"


def medians(data: dict[str, Any]) -> dict[str, float]:
    return {label: statistics.median(times) for label, times in data["throughput"].items() if times}


def ratios(data: dict[str, Any]) -> dict[str, float | str | None]:
    """The targets' figures: workpool ÷ fastest peer (throughput), ÷ ceiling, trio."""
    med = medians(data)
    rows = data["rows"]
    earlier = data.get("earlier", ())
    peers = {label: t for label, t in med.items() if rows[label]["peer"] and label not in earlier}
    fastest = min(peers, key=peers.__getitem__) if peers else None
    wp, wp_trio = med.get(WORKPOOL), med.get(f"{WORKPOOL} (trio)")
    ceiling = med.get(CEILING)
    return {
        "fastest_peer": fastest,
        "vs_peer": peers[fastest] / wp if fastest and wp else None,
        "vs_ceiling": ceiling / wp if ceiling and wp else None,
        "trio": wp_trio / wp if wp_trio and wp else None,
    }


def section(data: dict[str, Any]) -> list[str]:
    med = medians(data)
    figures = ratios(data)
    items = data["items"]
    rounds = max((len(t) for t in data["throughput"].values()), default=0)
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    machine = data["machine"]
    loads = [data.get("load_before"), *data.get("load_between", []), data.get("load_after")]
    load = ", ".join(f"{value:.2f}" for value in loads if value is not None)
    lines = [
        HEADING,
        "",
        "Written by `bench/redis_peers.py` (not part of `make bench`: it needs the Redis "
        "server on 127.0.0.1:6379); do not edit by hand. "
        f"{items:,} no-op tasks through one worker with {data['consumers']} consumers, "
        "from the first enqueue to the last task's run, on one Redis server. Every worker "
        "runs in the producer's process, on its event loop; "
        f"{data['producers']} producer tasks enqueue one task at a time each, except the "
        "rows marked *bulk* (one pipelined call for the round). Each round runs on a "
        "fresh queue in its own event loop, the rows taking turns; "
        f"medians of {rounds} rounds"
        + (f" ({data['runs']} runs)" if data.get("runs", 1) > 1 else "")
        + " after one warm-up round each. Nobody keeps results. "
        "The ceiling is a raw coredis loop: pipelined `XADD` (100 at a time), one "
        "consumer doing `XREADGROUP COUNT 100` and `XACK`+`XDEL` per batch in a "
        "transaction. *CPU per task* is this process's CPU time (producer and worker; "
        "the Redis server not counted) over the round, per task: on a busy machine it "
        "moves less than the wall time.",
        "",
        f"- run: {data['started'][:19].replace('T', ' ')} UTC, workpool commit "
        f"{data['commit']}, Redis server {data['redis']}",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores (shared with the Redis "
        f"server); Python {machine['python']}; {machine['os']}",
        f"- libraries: {versions}",
        f"- load average (1 min) before, (between runs,) and after: {load} (`uptime` after: "
        f"{data['uptime']})",
        "",
    ]
    lines += _targets(figures, data)
    header = [
        "implementation",
        "backend",
        "median",
        "fastest - slowest",
        "items/s",
        "ratio (time ÷ workpool)",
        "CPU per task",
        "setup",
    ]
    body = []
    wp = med.get(WORKPOOL)
    cpu = data.get("cpu", {})
    for label, median in sorted(med.items(), key=lambda kv: kv[1]):
        row = data["rows"][label]
        times = data["throughput"][label]
        name = f"**{label}**" if label.startswith(WORKPOOL) else label
        if label in data.get("earlier", ()):
            name += " †"
        note = row["note"] + (" (bulk)" if row["bulk"] else "")
        body.append(
            [
                name,
                row["backend"],
                fmt_time(median),
                f"{fmt_time(min(times))} - {fmt_time(max(times))}",
                fmt_rate(items / median),
                f"{median / wp:.2f}x" if wp else "n/a",
                fmt_time(statistics.median(cpu[label]) / items) if cpu.get(label) else "n/a",
                note.strip(),
            ]
        )
    lines += [f"### Throughput, {items:,} no-op tasks, {data['consumers']} consumers", ""]
    lines += _table(header, body)
    if data.get("earlier"):
        lines += [
            f"† from an earlier run ({data['earlier_run']}), with the same setup; the "
            "other rows, and every ratio in the targets, come from this run.",
            "",
        ]
    if data["latency"]:
        lines += [
            f"### Enqueue-to-start latency at {data['latency_rate']:g} tasks/s",
            "",
            f"{data['latency_items']:,} tasks a round, one every "
            f"{1e3 / data['latency_rate']:g} ms on an even schedule, the same worker "
            "setups; from just before the enqueue call to the task's first line, "
            "percentiles over every task of every round.",
            "",
        ]
        body = []
        for label, lat in sorted(data["latency"].items(), key=lambda kv: kv[1]["p50"]):
            name = f"**{label}**" if label.startswith(WORKPOOL) else label
            if label in data.get("earlier", ()):
                name += " †"
            body.append(
                [
                    name,
                    fmt_time(lat["p50"]),
                    fmt_time(lat["p99"]),
                    fmt_time(lat["max"]),
                    str(lat["n"]),
                ]
            )
        lines += _table(["implementation", "p50", "p99", "max", "tasks"], body)
    if CHART.exists():
        lines += [f"![Redis throughput and latency]({CHART.name})", ""]
    return lines


def _targets(figures: dict[str, Any], data: dict[str, Any]) -> list[str]:
    fastest = figures["fastest_peer"]

    def verdict(ok: bool | None) -> str:
        return "not run" if ok is None else ("met" if ok else "**missed**")

    def show(value: float | None, suffix: str = "x") -> str:
        return "n/a" if value is None else f"{value:.2f}{suffix}"

    vs_peer, vs_ceiling, trio = figures["vs_peer"], figures["vs_ceiling"], figures["trio"]
    peer_verdict = verdict(None if vs_peer is None else vs_peer >= TARGET_PEER)
    if vs_peer is not None and vs_peer >= GOAL_PEER:
        peer_verdict = "met (and the 3x goal)"
    rows = [
        [
            f"throughput vs the fastest peer ({fastest})",
            f">= {TARGET_PEER:g}x (goal {GOAL_PEER:g}x)",
            show(vs_peer),
            peer_verdict,
        ],
        [
            "throughput as a fraction of the ceiling",
            f">= {TARGET_CEILING:g}",
            show(vs_ceiling, ""),
            verdict(None if vs_ceiling is None else vs_ceiling >= TARGET_CEILING),
        ],
        [
            "trio (time ÷ asyncio)",
            f"<= {TARGET_TRIO:g}x",
            show(trio),
            verdict(None if trio is None else trio <= TARGET_TRIO),
        ],
    ]
    cpu = data.get("cpu", {})
    if cpu.get(WORKPOOL) and fastest and cpu.get(fastest):
        ratio = statistics.median(cpu[fastest]) / statistics.median(cpu[WORKPOOL])
        rows.append([f"CPU per task, {fastest} ÷ workpool", "reported", show(ratio), ""])
    lat = data.get("latency") or {}
    if WORKPOOL in lat and fastest in lat:
        rows.append(
            [
                f"latency p50 / p99 at {data['latency_rate']:g}/s, workpool ({fastest})",
                "reported",
                f"{fmt_time(lat[WORKPOOL]['p50'])} / {fmt_time(lat[WORKPOOL]['p99'])} "
                f"({fmt_time(lat[fastest]['p50'])} / {fmt_time(lat[fastest]['p99'])})",
                "",
            ]
        )
    return _table(["target (issue 12)", "goal", "this run", "verdict"], rows)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return [*out, *("| " + " | ".join(row) + " |" for row in rows), ""]


def write_section(lines: list[str]) -> None:
    """Replace the Redis section of RESULTS.md (up to the next ``## ``), or append it."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    before, found, after = text.partition(f"\n{HEADING}\n")
    rest = ""
    if found:
        _, heading, tail = after.partition("\n## ")
        rest = f"\n{heading}{tail}" if heading else ""
    new = before.rstrip() + "\n\n" + "\n".join(lines).rstrip() + "\n" + rest
    RESULTS.write_text(new, encoding="utf-8")
    print(f"wrote the Redis section of {RESULTS.relative_to(ROOT)}")


def write_chart(data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = medians(data)
    items = data["items"]
    order = sorted(med, key=med.__getitem__)
    fig, (rate_ax, lat_ax) = plt.subplots(
        1, 2, figsize=(13, 5.2), dpi=110, gridspec_kw={"width_ratios": [3, 2]}
    )
    colours = [
        "tab:blue"
        if label.startswith(WORKPOOL)
        else "tab:gray"
        if label.startswith(CEILING)
        else "tab:orange"
        for label in order
    ]
    rates = [items / med[label] for label in order]
    spread = [
        [
            items / med[label] - items / max(data["throughput"][label]),
            items / min(data["throughput"][label]) - items / med[label],
        ]
        for label in order
    ]
    rate_ax.barh(order, rates, color=colours, xerr=list(zip(*spread, strict=True)), capsize=3)
    rate_ax.invert_yaxis()
    rate_ax.set_xlabel("tasks per second (median; whiskers: slowest and fastest round)")
    rate_ax.set_title(f"{items:,} no-op tasks, {data['consumers']} consumers, one worker")
    rate_ax.grid(True, axis="x", alpha=0.3)
    for y, (rate, (_, up)) in enumerate(zip(rates, spread, strict=True)):
        rate_ax.text(rate + up, y, f"  {rate:,.0f}", va="center", fontsize=8)
    lat = data.get("latency") or {}
    if lat:
        labels = sorted(lat, key=lambda k: lat[k]["p50"])
        ys = range(len(labels))
        lat_ax.barh(
            [y - 0.2 for y in ys],
            [lat[k]["p50"] * 1e3 for k in labels],
            0.4,
            label="p50",
            color="tab:blue",
        )
        lat_ax.barh(
            [y + 0.2 for y in ys],
            [lat[k]["p99"] * 1e3 for k in labels],
            0.4,
            label="p99",
            color="tab:red",
        )
        lat_ax.set_yticks(list(ys), labels)
        lat_ax.invert_yaxis()
        lat_ax.set_xscale("log")
        lat_ax.set_xlabel("milliseconds (log)")
        lat_ax.set_title(f"enqueue-to-start latency at {data['latency_rate']:g} tasks/s")
        lat_ax.grid(True, axis="x", which="both", alpha=0.3)
        lat_ax.legend(fontsize=8)
    else:
        lat_ax.set_visible(False)
    fig.suptitle(
        f"Redis Streams task queues (Redis {data['redis']}, {data['machine']['cores']} cores, "
        f"load average {data.get('load_before') or 0:.1f} to {data.get('load_after') or 0:.1f})"
    )
    fig.tight_layout()
    fig.savefig(CHART)
    plt.close(fig)
    print(f"wrote {CHART.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per row (>= 3)")
    parser.add_argument("--warmup-items", type=int, default=1000)
    parser.add_argument("--producers", type=int, default=16)
    parser.add_argument("--latency-items", type=int, default=1500)
    parser.add_argument("--latency-rate", type=float, default=500.0)
    parser.add_argument("--latency-rounds", type=int, default=3, help="0: no latency rows")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take")
    parser.add_argument("--only", action="append", help="rows whose label holds this")
    parser.add_argument("--json", type=Path, help="keep the raw figures here")
    parser.add_argument(
        "--from-json",
        type=Path,
        action="append",
        help="write the report from these figures (repeat: the runs' rounds together)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with several --from-json: the last run's rows replace the others' (the "
        "rows it did not measure stay, marked as from the earlier run)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, write no report")
    args = parser.parse_args(argv)

    if args.from_json:
        runs = [json.loads(path.read_text()) for path in args.from_json]
        data = merge(runs, replace=args.replace)
    else:
        started = time.perf_counter()
        data = run(args)
        print(f"ran in {time.perf_counter() - started:.0f} s")
        if args.json is not None:
            args.json.write_text(json.dumps(data, indent=1))
    lines = section(data)
    print("\n".join(lines))
    if not args.no_write:
        write_chart(data)
        write_section(section(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
