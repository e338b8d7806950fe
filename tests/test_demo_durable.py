"""The demo on an SQLite file survives ``kill -9``: started again, it finishes every item."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

ITEMS = 60


def clean_env() -> dict[str, str]:
    """The environment without WORKPOOL_* settings (the demo reads them)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKPOOL_")}


def demo(backend: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workpool",
        "demo",
        "--channel",
        "sqlite:///demo.db?lease=1",
        "--items",
        str(ITEMS),
        "--duration",
        "4",
        "--plain",
        "--failure-rate",
        "0",
        "--seed",
        "5",
        "--backend",
        backend,
    ]


def store_counts(path: Path) -> tuple[int, int]:
    """Messages and dead letters left in the demo's database."""
    with sqlite3.connect(path) as db:
        messages = db.execute("SELECT count(*) FROM workpool_messages").fetchone()[0]
        dead = db.execute("SELECT count(*) FROM workpool_dead").fetchone()[0]
    return messages, dead


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_kill_9_then_restart_finishes_every_item(backend: str, tmp_path: Path) -> None:
    """Killed with SIGKILL mid-run and started again, the demo resumes the same batch
    (no second one), runs what is left, and every item is done at least once."""
    first = subprocess.Popen(
        demo(backend),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert first.stdout is not None
        banner = first.stdout.readline()
        batch = re.search(r"new batch (\w+) of 60 items", banner)
        assert batch is not None, banner
        done_at_kill = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = first.stdout.readline()
            assert line, "the first run ended before it was killed"
            progress = re.match(r"\[\s*[\d.]+s\] done\s+(\d+)/", line)
            if progress and int(progress[1]) >= 10:
                done_at_kill = int(progress[1])
                break
        assert done_at_kill >= 10
        first.kill()  # SIGKILL: no drain, no release, leases held
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stdout is not None:
            first.stdout.close()
    assert (tmp_path / "demo.db.demo.json").exists()
    assert store_counts(tmp_path / "demo.db")[0] > 0  # work left in the store

    second = subprocess.run(
        demo(backend), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    out = second.stdout
    assert second.returncode == 0, (out, second.stderr)
    assert f"resuming batch {batch[1]} of 60 items" in out
    before = re.search(r"(\d+) done before this run", out)
    assert before is not None
    assert int(before[1]) >= done_at_kill - 4  # at most the in-flight ones were lost to the kill
    final = re.search(
        r"batch (\w+): (\d+) of (\d+) items done: (\d+) succeeded \((\d+) ran more than once\), "
        r"(\d+) dead-lettered, (\d+) missing",
        out,
    )
    assert final is not None, out
    assert final[1] == batch[1]
    assert (int(final[2]), int(final[3]), int(final[4]), int(final[6]), int(final[7])) == (
        ITEMS,
        ITEMS,
        ITEMS,
        0,
        0,
    )
    assert store_counts(tmp_path / "demo.db") == (0, 0)
    assert not (tmp_path / "demo.db.demo.json").exists()  # the next run starts a new batch
