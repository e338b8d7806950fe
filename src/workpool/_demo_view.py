"""The demo's output: plain progress lines, or a rich live panel, and the closing summary.

Log records of the run go to stderr, as redirected by the shell. With the live
panel on a terminal, a log line written to that terminal would scroll over the
panel, so records are kept in the panel instead (the latest few, and a count by
level) and written to stderr only when stderr is not the terminal
(``2>demo.log``, ``2>/dev/null``).
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ._runner import Main, serve_until_signalled

if TYPE_CHECKING:
    from ._pool import WorkerPool
    from ._stats import DrainReport, PoolStats, TimingSummary

__all__ = ["LiveView", "PlainView", "summary_lines"]

_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Seconds of history behind the rate shown: long enough to be steady, short enough
# to follow a drain.
_RATE_WINDOW = 2.0


def ms(seconds: float) -> str:
    """*seconds* as ``12 ms`` below a second, else ``1.25 s``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _timing(label: str, t: TimingSummary) -> str:
    return (
        f"{label} n={t.count} mean={ms(t.mean)} p50={ms(t.p50)} p95={ms(t.p95)} "
        f"p99={ms(t.p99)} max={ms(t.max)}"
    )


def _done(stats: PoolStats) -> int:
    """Items the demo is through with: finished one way or another, or refused."""
    return stats.finished + stats.rejected


def summary_lines(
    stats: PoolStats, report: DrainReport, sessions_shared: int, sessions_ended: int
) -> list[str]:
    """The closing lines: stats, timings, the drain, sessions and the accounting."""
    return [
        f"stats: enqueued={stats.enqueued} succeeded={stats.succeeded} failed={stats.failed} "
        f"retried={stats.retried} dead_lettered={stats.dead_lettered} dropped={stats.dropped} "
        f"rejected={stats.rejected} timed_out={stats.timed_out} cancelled={stats.cancelled} "
        f"abandoned={stats.abandoned}",
        _timing("wait:", stats.wait_time),
        _timing("run: ", stats.run_time),
        f"drain: succeeded={report.succeeded} failed={report.failed} "
        f"cancelled={len(report.cancelled)} abandoned={len(report.abandoned)} "
        f"elapsed={report.elapsed:.3f}s deadline_hit={report.deadline_hit}",
        f"sessions: {sessions_shared} shared by simulated requests and their items, "
        f"{sessions_ended} ended",
        f"accounted for: {stats.enqueued} = {stats.succeeded} succeeded + {stats.failed} failed "
        f"+ {stats.dropped} dropped + {stats.cancelled} cancelled + {stats.abandoned} abandoned",
    ]


class _Rate:
    """Items done per second over the last few seconds."""

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def __call__(self, now: float, done: int) -> float:
        samples = self.samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW:
            samples.popleft()
        first_at, first_done = samples[0]
        return (done - first_done) / (now - first_at) if now > first_at else 0.0


class _OneLineFormatter(logging.Formatter):
    """Log lines without tracebacks: the demo's failures are simulated."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


class _CurrentStderr:
    """``sys.stderr`` as it is at each write (pytest's capture swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _PanelLog(logging.Handler):
    """Keeps the latest records and a count by level for the panel; maybe writes them too."""

    def __init__(self, stream: TextIO | None, keep: int = 4) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(_OneLineFormatter(_LOG_FORMAT))
        self.stream = stream
        self.latest: collections.deque[tuple[int, str]] = collections.deque(maxlen=keep)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.latest.append((record.levelno, line))
            self.counts[record.levelname] += 1
            if self.stream is not None:
                self.stream.write(line + "\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)


class PlainView:
    """A progress line every *every* seconds; log records go to stderr as they come."""

    def __init__(self, out: TextIO, every: float, items: int, deadline: float) -> None:
        self.out = out
        self.every = every
        self.items = items
        self.handler = logging.StreamHandler(_CurrentStderr())
        self.handler.setFormatter(_OneLineFormatter(_LOG_FORMAT))
        self.handler.setLevel(logging.WARNING)

    def line(self, stats: PoolStats, elapsed: float, rate: float) -> str:
        """One progress line."""
        return (
            f"[{elapsed:5.1f}s] done {_done(stats):4d}/{self.items} ({rate:5.0f}/s)  "
            f"queued {stats.queued:4d}  busy {stats.busy}/{stats.consumers}  "
            f"succeeded {stats.succeeded:4d}  retried {stats.retried:3d}  "
            f"failed {stats.failed:3d}  timed out {stats.timed_out:3d}  "
            f"dropped {stats.dropped:3d}  cancelled {stats.cancelled:3d}  "
            f"abandoned {stats.abandoned:3d}  wait p95 {ms(stats.wait_time.p95)}  "
            f"run p95 {ms(stats.run_time.p95)}"
        )

    async def run(self, pool: WorkerPool, started: float) -> None:
        """Print a progress line every so often, until cancelled."""
        rate = _Rate()
        while True:
            await anyio.sleep(self.every)
            stats = pool.stats()
            now = time.monotonic()
            print(self.line(stats, now - started, rate(now, _done(stats))), file=self.out)
            self.out.flush()

    def summary(self, lines: list[str], stats: PoolStats, report: DrainReport) -> None:
        """Print the closing lines."""
        for line in lines:
            print(line, file=self.out)
        self.out.flush()


class LiveView:
    """A rich live panel of the pool's progress, then summary tables."""

    def __init__(self, out: TextIO, items: int, deadline: float) -> None:
        from rich.console import Console

        self.console = Console(file=out)
        self.items = items
        self.deadline = deadline
        self.phase = "running"
        self.drain_started: float | None = None
        self.rate = _Rate()
        stderr = sys.stderr
        # On the terminal the panel is drawn on, a log line would scroll over it.
        self.log_to_terminal = stderr.isatty()
        self.handler = _PanelLog(None if self.log_to_terminal else stderr)

    def _title(self, now: float, elapsed: float) -> str:
        if self.phase == "draining" and self.drain_started is not None:
            left = max(0.0, self.deadline - (now - self.drain_started))
            return f"workpool demo - draining - deadline in {left:.1f} s"
        return f"workpool demo - {self.phase} - {elapsed:.1f} s"

    def render(self, stats: PoolStats, now: float, elapsed: float) -> Any:
        """The panel for *stats*: progress, rate, outcomes, timings, latest log lines."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        done = _done(stats)
        rate = self.rate(now, done)
        # Once shutdown began nothing more is queued: progress is toward what was.
        total = self.items if self.phase == "running" else stats.enqueued + stats.rejected
        table = Table(title=self._title(now, elapsed), min_width=56, show_header=False)
        table.add_column("", style="bold")
        table.add_column("", justify="right")
        table.add_row("done", f"{done} of {total}")
        table.add_row("", ProgressBar(total=max(1, total), completed=done, width=30))
        table.add_row("rate", f"{rate:.0f} items/s")
        table.add_row("queue depth", f"{stats.queued} / {stats.capacity}")
        table.add_row("busy consumers", f"{stats.busy} / {stats.consumers}")
        table.add_row("succeeded", f"[green]{stats.succeeded}[/]")
        table.add_row("retried", f"[yellow]{stats.retried}[/]")
        table.add_row("failed", f"[red]{stats.failed}[/]")
        table.add_row("timed out", str(stats.timed_out))
        table.add_row("dropped / rejected", f"{stats.dropped} / {stats.rejected}")
        table.add_row("cancelled", f"[red]{stats.cancelled}[/]" if stats.cancelled else "0")
        table.add_row("abandoned", f"[red]{stats.abandoned}[/]" if stats.abandoned else "0")
        table.add_row("wait p95 / run p95", f"{ms(stats.wait_time.p95)} / {ms(stats.run_time.p95)}")
        counts = self.handler.counts
        if not counts:
            return table
        where = "latest below; 2>FILE keeps them all" if self.log_to_terminal else "all on stderr"
        tally = ", ".join(f"{n} {level}" for level, n in sorted(counts.items()))
        lines = [Text(f"log: {tally} ({where})", style="dim")]
        for level, line in self.handler.latest:
            style = "red" if level >= logging.ERROR else "yellow"
            lines.append(Text(line, style=style, overflow="ellipsis", no_wrap=True))
        return Group(table, *lines)

    async def run(self, pool: WorkerPool, started: float) -> None:
        """Redraw the panel ten times a second, until cancelled."""
        from rich.live import Live

        def frame() -> Any:
            now = time.monotonic()
            return self.render(pool.stats(), now, now - started)

        # redirect_stderr=False: stderr stays where the shell sent it.
        with Live(
            frame(), console=self.console, refresh_per_second=10, redirect_stderr=False
        ) as live:
            try:
                while True:
                    if pool.stopping.is_set() and self.phase == "running":
                        self.phase = "draining"
                        self.drain_started = time.monotonic()
                    live.update(frame())
                    await anyio.sleep(0.1)
            finally:
                self.phase = "done"
                live.update(frame())

    def summary(self, lines: list[str], stats: PoolStats, report: DrainReport) -> None:
        """Timings and DrainReport tables, then the closing lines."""
        from rich.table import Table

        drain = Table(title="DrainReport")
        for column in ("succeeded", "failed", "cancelled", "abandoned", "elapsed", "deadline hit"):
            drain.add_column(column, justify="right")
        drain.add_row(
            f"[green]{report.succeeded}[/]",
            f"[red]{report.failed}[/]",
            str(len(report.cancelled)),
            str(len(report.abandoned)),
            f"{report.elapsed:.3f} s",
            "[red]yes[/]" if report.deadline_hit else "no",
        )
        timings = Table(title="Timings")
        for column in ("", "count", "mean", "p50", "p95", "p99", "max"):
            timings.add_column(column, justify="right")
        for label, t in (("wait", stats.wait_time), ("run", stats.run_time)):
            timings.add_row(
                label, str(t.count), *(ms(v) for v in (t.mean, t.p50, t.p95, t.p99, t.max))
            )
        self.console.print(timings)
        self.console.print(drain)
        for line in (lines[0], lines[-2], lines[-1]):
            self.console.print(line, highlight=False)


async def run_with_view(
    pool: WorkerPool, view: LiveView | PlainView, main: Main, deadline: float
) -> DrainReport:
    """Serve *pool* until *main* returns or a signal arrives, showing *view* meanwhile
    (workpool's log records go to the view); the drain's report."""
    library = logging.getLogger("workpool")
    library.addHandler(view.handler)
    try:
        started = time.monotonic()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(view.run, pool, started)
            report = await serve_until_signalled(pool, main, deadline=deadline)
            task_group.cancel_scope.cancel()
    finally:
        library.removeHandler(view.handler)
    return report
