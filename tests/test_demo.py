"""The demo (``python -m workpool demo``): it runs, reports every item, and drains on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from workpool._demo import DemoOptions, main


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
