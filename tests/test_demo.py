"""The demo (``python -m workpool demo``): it runs, reports every item, and drains on Ctrl-C."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from rich.console import Console

from workpool import PoolStats
from workpool._cli import main
from workpool._demo import EXIT_BAD_SETTINGS, DemoOptions, run_demo
from workpool._demo_view import LiveView


def accounted(output: str) -> tuple[int, list[int]]:
    """The total and the parts of the demo's closing 'accounted for' line."""
    match = re.search(
        r"accounted for: (\d+) = (\d+) succeeded \+ (\d+) failed \+ (\d+) dropped "
        r"\+ (\d+) cancelled \+ (\d+) abandoned",
        output,
    )
    assert match is not None, output
    total, *parts = (int(g) for g in match.groups())
    return total, parts


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_short_demo_reports_every_item(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A short plain run prints the stats and the DrainReport, accounting for each item."""
    argv = ["demo", "--items", "50", "--duration", "0.5", "--plain", "--backend", backend]
    status = main([*argv, "--seed", "7", "--consumers", "3"])
    out = capsys.readouterr().out
    assert status == 0
    assert "50 items over 0.5 s, 3 consumers" in out
    assert "stats: enqueued=50 " in out
    assert "drain: " in out
    assert "cancelled=0 abandoned=0" in out
    total, parts = accounted(out)
    assert total == sum(parts) == 50
    shared = re.search(
        r"sessions: (\d+) shared by simulated requests and their items, (\d+) ended", out
    )
    assert shared is not None
    assert shared.group(1) == shared.group(2)  # every shared session ended once its items ran


def test_ctrl_c_drains_and_reports() -> None:
    """SIGINT (Ctrl-C) during the demo drains the pool and still prints the full report."""
    options = ["--items", "2000", "--duration", "30", "--plain", "--deadline", "1", "--seed", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workpool", "demo", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the banner: the pool is about to start
        assert first.startswith("workpool demo:"), first
        progress = proc.stdout.readline()  # the first progress line: jobs are running
        assert progress.startswith("["), progress
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - signalled < 10  # drained within the 1 s deadline, not 30 s of jobs
    assert "SIGINT received: draining" in err
    total, parts = accounted(out)
    assert total == sum(parts) < 2000
    cancelled, abandoned = parts[3], parts[4]
    assert proc.returncode == (0 if cancelled == abandoned == 0 else 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--items", "0"], "items must be at least 1"),
        (["demo", "--failure-rate", "1.5"], "failure_rate must be in"),
        (["demo", "--duration", "0"], "duration must be a positive"),
        (["demo", "--backend", "curio"], "invalid choice"),
    ],
)
def test_bad_options_fail_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-range options exit with status 2 and say what is wrong."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`workpool` alone shows the commands and exits 2."""
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_options_default_to_a_few_seconds_of_jobs() -> None:
    """The default demo queues a few hundred jobs over five seconds."""
    options = DemoOptions()
    assert options.items >= 100
    assert 3 <= options.duration <= 10


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as the one a person runs the demo in."""

    def isatty(self) -> bool:
        return True


def test_bad_setting_prints_one_line_and_exits_non_zero() -> None:
    """A bad WORKPOOL_* value gives one clear line on stderr and status 2, no traceback."""
    env = {**os.environ, "WORKPOOL_CONSUMERS": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "workpool", "demo", "--items", "5", "--plain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "workpool demo: bad setting: WORKPOOL_CONSUMERS (consumers): Input should be a valid "
        "integer, unable to parse string as an integer, got 'abc'"
    ]


def test_bad_setting_through_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() returns the status instead of raising, and names every bad variable."""
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "0")
    monkeypatch.setenv("WORKPOOL_SHUTDOWN_DEADLINE", "-1")
    assert main(["demo", "--plain"]) == EXIT_BAD_SETTINGS != 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "WORKPOOL_CONSUMERS" in err
    assert "WORKPOOL_SHUTDOWN_DEADLINE" in err


def test_live_view_logs_go_to_redirected_stderr_not_over_the_panel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With stderr redirected (not the terminal), log lines go there, never into the panel's stream."""
    terminal = _Terminal()
    options = DemoOptions(items=40, duration=0.3, failure_rate=0.9, live=True, seed=3)
    run_demo(options, out=terminal)
    err = capsys.readouterr().err
    shown = terminal.getvalue()
    assert "failed for good" in err
    assert "failed for good" not in shown.split("Timings")[0].split("log: ")[0]
    assert "(all on stderr)" in shown
    assert "accounted for: 40 = " in shown


def test_live_view_keeps_logs_in_the_panel_when_stderr_is_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, records are shown in the panel (latest few and counts), not written."""
    stderr = _Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    view = LiveView(_Terminal(), items=10, deadline=5.0)
    record = logging.LogRecord("workpool", logging.ERROR, __file__, 1, "boom %d", (7,), None)
    for _ in range(6):
        view.handler.handle(record)
    assert stderr.getvalue() == ""
    text = render_text(view, make_stats())
    assert "log: 6 ERROR (latest below; 2>FILE keeps them all)" in text
    assert text.count("ERROR workpool: boom 7") == 4


def test_panel_shows_progress_rate_outcomes_and_a_drain_countdown() -> None:
    """The panel has done of N, a rate, timed out/cancelled/abandoned, and a countdown."""
    view = LiveView(_Terminal(), items=200, deadline=5.0)
    view.render(make_stats(succeeded=0), 100.0, 0.0)  # the rate's first sample
    text = render_text(view, make_stats(succeeded=40, failed=5, timed_out=3), now=101.0)
    assert "45 of 200" in text
    assert "45 items/s" in text
    for label in ("timed out", "cancelled", "abandoned"):
        assert label in text
    view.phase = "draining"
    view.drain_started = 100.0
    text = render_text(view, make_stats(succeeded=50, cancelled=2, abandoned=7), now=101.5)
    assert "draining - deadline in 3.5 s" in text
    assert "59 of 60" in text  # toward what was accepted, once shutdown began


def make_stats(**counts: Any) -> PoolStats:
    """A PoolStats of 60 accepted items with the given counters, zero elsewhere."""
    base = PoolStats(
        consumers=4,
        busy=0,
        queued=0,
        capacity=100,
        enqueued=60,
        succeeded=0,
        failed=0,
        retried=0,
        dead_lettered=0,
        dropped=0,
        rejected=0,
        timed_out=0,
        cancelled=0,
        abandoned=0,
    )
    return dataclasses.replace(base, **counts)


def render_text(view: LiveView, stats: PoolStats, now: float = 101.0) -> str:
    """The panel as plain text, as a wide terminal shows it."""
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(view.render(stats, now, now - 100.0))
    return console.export_text()
