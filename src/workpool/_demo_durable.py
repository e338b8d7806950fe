"""The demo on a durable channel: a batch of named tasks that survives ``kill -9``.

``python -m workpool demo --channel sqlite:///demo.db`` stores a batch of jobs in the
channel (each due at its simulated arrival time, ``delay=``) and runs them. Killed
and started again, it takes up the same batch: what is left runs, items the killed
process held come back when their lease runs out, and nothing is enqueued twice.

What makes it resumable, beside the channel itself:

* a small state file next to the database (``demo.db.demo.json``) names the batch
  and says whether all of it was stored. The batch is stored *before* any consumer
  starts, each item with ``key=<batch>:<n>``; a run killed while storing stores it
  again, and the keys make that add nothing already there;
* each job appends its number to the batch's journal (``demo.db.<batch>.done``) when
  it succeeds; an item failed for good is among the dead letters. The batch is
  finished when every number is in one or the other; then the state file goes and
  the next run starts a new batch.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from . import _demo_tasks
from ._demo_view import LiveView, PlainView, ms, run_with_view
from ._runner import exit_status
from ._settings_channel import channel_arguments

if TYPE_CHECKING:
    from ._demo import DemoOptions
    from ._item import WorkItem
    from ._open import ChannelURL
    from ._pool import WorkerPool
    from ._settings import PoolSettings
    from ._stats import DrainReport, PoolStats

__all__ = ["DEMO_LEASE", "run_durable_demo"]

#: The lease of the demo's channel unless the URL or WORKPOOL_LEASE sets one: short,
#: so that after a ``kill -9`` the items the killed process held come back soon.
DEMO_LEASE = 5.0
_KINDS = (("quick", 50), ("slow", 15), ("sync", 20), ("flaky", 15))


@dataclass
class Batch:
    """The demo's batch, as its state file keeps it."""

    id: str
    items: int
    seed: int
    failure_rate: float
    duration: float
    stored: bool = False

    def key(self, n: int) -> str:
        return f"{self.id}:{n}"


def _state_path(parsed: ChannelURL) -> Path:
    if parsed.scheme == "sqlite":
        return Path(parsed.target + ".demo.json")
    queue = parsed.options.get("queue", "default")
    return Path.cwd() / f"workpool-demo-{queue}.json"


def _journal(state: Path, batch: Batch) -> Path:
    return state.with_name(state.name.removesuffix(".demo.json") + f".{batch.id}.done")


def _load(path: Path, parsed: ChannelURL) -> Batch | None:
    """The pending batch, if any; none when its SQLite file is gone (a fresh start)."""
    if parsed.scheme == "sqlite" and not Path(parsed.target).exists():
        path.unlink(missing_ok=True)
        return None
    try:
        return Batch(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"the demo's state file {str(path)!r} is damaged ({exc}); delete it"
        ) from None


def _save(path: Path, batch: Batch) -> None:
    """Write the state file whole or not at all (a kill -9 mid-write keeps the old)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(asdict(batch)), encoding="utf-8")
    os.replace(temporary, path)


def _calls(batch: Batch, journal: Path) -> list[tuple[Any, float]]:
    """The batch's task calls with their arrival times: the same for the same batch."""
    rng = random.Random(batch.seed)
    tasks = {
        "quick": (_demo_tasks.quick, 0.005, 0.03),
        "slow": (_demo_tasks.slow, 0.2, 0.6),
        "sync": (_demo_tasks.sync, 0.02, 0.1),
        "flaky": (_demo_tasks.flaky, 0.01, 0.05),
    }
    scale = batch.duration / 5.0
    gap = batch.duration * 0.8 / batch.items
    kinds = [kind for kind, _ in _KINDS]
    weights = [weight for _, weight in _KINDS]
    calls = []
    arrival = 0.0
    for n in range(batch.items):
        found, low, high = tasks[rng.choices(kinds, weights)[0]]
        seconds = round(rng.uniform(low, high) * scale, 4)
        call = found.bind(
            n=n, seconds=seconds, failure_rate=batch.failure_rate, journal=str(journal)
        )
        calls.append((call, round(arrival, 3)))
        arrival += gap * rng.uniform(0.0, 2.0)
    return calls


class _Progress:
    """Which of the batch's items are done: in the journal, or dead-lettered."""

    def __init__(self, batch: Batch, journal: Path) -> None:
        self.batch = batch
        self.journal = journal
        self.runs: dict[int, int] = {}
        self.dead: set[int] = set()
        self.gave_up = False
        self._offset = 0

    def read(self) -> None:
        try:
            with self.journal.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line cut by a kill is read later
        self._offset += len(complete)
        for line in complete.split():
            n = int(line)
            self.runs[n] = self.runs.get(n, 0) + 1

    def add_dead(self, kwargs: dict[str, Any]) -> None:
        if kwargs.get("journal") == str(self.journal) and isinstance(kwargs.get("n"), int):
            self.dead.add(kwargs["n"])

    @property
    def done(self) -> int:
        return len(self.runs.keys() | self.dead)

    @property
    def finished(self) -> bool:
        return self.done >= self.batch.items


async def _store(batch: Batch, calls: list[tuple[Any, float]], channel: Any) -> None:
    """Store every call, a few at a time (the channel commits them in groups)."""

    async def put(start: int) -> None:
        for n in range(start, len(calls), 8):
            call, arrival = calls[n]
            await channel.enqueue(call, key=batch.key(n), delay=arrival or None)

    try:
        async with anyio.create_task_group() as group:
            for start in range(8):
                group.start_soon(put, start)
    finally:
        await channel.aclose()


async def _wait_for(progress: _Progress, patience: float, pool: WorkerPool) -> None:
    """The demo's main: wait until every item of the batch is done, or until nothing
    has happened for *patience* seconds with nothing queued or running (items missing
    from the store: the summary says how many)."""
    last, since = -1, time.monotonic()
    while True:
        progress.read()
        if progress.finished:
            return
        now = time.monotonic()
        if progress.done != last or pool.stats().busy or pool.channel.qsize():
            last, since = progress.done, now
        elif now - since > patience:
            progress.gave_up = True
            return
        await anyio.sleep(0.1)


def durable_settings(settings: PoolSettings) -> PoolSettings:
    """*settings* with the demo's short lease when none was set."""
    if settings.lease is None and "lease" not in settings.channel_url.options:
        return settings.model_copy(update={"lease": DEMO_LEASE})
    return settings


async def _run(
    options: DemoOptions, settings: PoolSettings, out: TextIO
) -> tuple[PoolStats, DrainReport, _Progress, LiveView | PlainView, int]:
    from ._pool import WorkerPool

    parsed = settings.channel_url
    state = _state_path(parsed)
    batch = _load(state, parsed)
    resumed = batch is not None
    if batch is None:
        seed = options.seed if options.seed is not None else random.randrange(2**31)
        batch = Batch(
            uuid.uuid4().hex[:8], options.items, seed, options.failure_rate, options.duration
        )
        _save(state, batch)
    journal = _journal(state, batch)
    progress = _Progress(batch, journal)

    def dead_letter(item: WorkItem, exc: BaseException) -> None:
        progress.add_dead(getattr(item.work, "kwargs", {}))

    overrides: dict[str, Any] = {"tasks": [_demo_tasks], "on_dead_letter": dead_letter}
    if options.consumers is not None:
        overrides["consumers"] = options.consumers
    pool = WorkerPool.from_settings(settings, **overrides)
    deadline = options.deadline if options.deadline is not None else settings.shutdown_deadline
    print(
        f"workpool demo on {parsed.shown}: {'resuming' if resumed else 'new'} batch {batch.id} "
        f"of {batch.items} items over {batch.duration:.1f} s, {pool.consumers} consumers, "
        f"failure rate {batch.failure_rate:.0%} per attempt (flaky jobs x4), 3 attempts, "
        f"lease {settings.lease or parsed.options.get('lease')} s, deadline {deadline:.1f} s, "
        f"{options.backend}; Ctrl-C drains; kill -9 it and run it again: nothing is lost",
        file=out,
    )
    out.flush()
    if not batch.stored:
        # No consumer has run yet: storing again adds only what a kill left out (keys).
        calls = _calls(batch, journal)
        await _store(batch, calls, channel_arguments(settings, build=True)["channel"])
        batch.stored = True
        _save(state, batch)
    letters = getattr(pool.channel, "dead_letters", None)
    if letters is not None:
        for letter in await letters(limit=max(1000, batch.items)):
            progress.add_dead(letter.kwargs)
    progress.read()
    left = batch.items - progress.done
    print(
        f"{batch.items - left} done before this run (in the journal or the dead letters), "
        f"{left} to go",
        file=out,
    )
    out.flush()
    view: LiveView | PlainView = (
        LiveView(out, max(1, left), deadline)
        if options.live
        else PlainView(out, min(1.0, max(0.25, batch.duration / 10)), max(1, left), deadline)
    )
    # Items a killed process held come back after their lease, delayed ones within the
    # batch's duration: only a silence longer than both means items are missing.
    lease = float(settings.lease or parsed.options.get("lease", DEMO_LEASE))
    patience = 3 * lease + 5 + batch.duration
    report = await run_with_view(pool, view, partial(_wait_for, progress, patience), deadline)
    progress.read()
    if progress.finished:
        state.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
    return pool.stats(), report, progress, view, left


def summary(stats: PoolStats, report: DrainReport, progress: _Progress, left: int) -> list[str]:
    """The closing lines of a durable run."""
    batch = progress.batch
    succeeded = len(progress.runs.keys() - progress.dead)
    again = sum(1 for runs in progress.runs.values() if runs > 1)
    missing = batch.items - progress.done
    if progress.finished:
        end = "finished; the next run starts a new batch"
    elif progress.gave_up:
        end = (
            f"{missing} neither done nor queued nor running: LOST (delete the state file "
            "*.demo.json to start a new batch)"
        )
    else:
        end = f"{missing} left in the store: run the same command again to finish it"
    return [
        f"stats: delivered={stats.delivered} redelivered={stats.redelivered} "
        f"succeeded={stats.succeeded} failed={stats.failed} retried={stats.retried} "
        f"rescheduled={stats.rescheduled} released={stats.released}",
        f"run: n={stats.run_time.count} p50={ms(stats.run_time.p50)} p99={ms(stats.run_time.p99)}",
        f"drain: released={len(report.released)} elapsed={report.elapsed:.3f}s "
        f"deadline_hit={report.deadline_hit}",
        f"this run: {left} item(s) were left when it started, {stats.delivered} deliveries",
        f"batch {batch.id}: {progress.done} of {batch.items} items done: {succeeded} "
        f"succeeded ({again} ran more than once), {len(progress.dead)} dead-lettered, "
        f"{missing} missing; {end}",
    ]


def run_durable_demo(options: DemoOptions, settings: PoolSettings, out: TextIO) -> int:
    """Run (or resume) the demo's batch on the durable channel of *settings*.

    Returns:
        `exit_status` of the drain: 0 unless items were cancelled or abandoned (an
        interrupted batch stays in the store; the next run finishes it); 1 when
        items of the batch are missing from the store.
    """
    settings = durable_settings(settings)
    stats, report, progress, view, left = anyio.run(
        partial(_run, options, settings, out), backend=options.backend
    )
    view.summary(summary(stats, report, progress, left), stats, report)
    return 1 if progress.gave_up else exit_status(report)
