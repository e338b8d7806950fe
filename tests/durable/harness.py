"""Worker processes on a real SQLite file, and the checks every fault test ends with."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio

from tests.durable.tasks import RUNS_ENV, Run, read_runs
from workpool import SqliteChannel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from workpool import DeadLetter

ROOT = Path(__file__).resolve().parents[2]

#: how long a test waits for something that should happen (a loaded CI box is slow)
PATIENCE = 30.0


async def wait_until(check: Callable[[], Any], what: str, timeout: float = PATIENCE) -> Any:
    """Poll *check* (sync) until it returns something truthy; fail naming *what*."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.05)


class Worker:
    """``python -m tests.durable.worker`` in a child process; its output goes to files."""

    def __init__(self, harness: Harness, name: str, **options: Any) -> None:
        self.name = name
        self.report_path = harness.tmp / f"{name}.report.json"
        self.out_path = harness.tmp / f"{name}.out"
        self.err_path = harness.tmp / f"{name}.err"
        argv = [
            sys.executable,
            "-m",
            "tests.durable.worker",
            "--db",
            str(harness.db),
            "--backend",
            harness.backend,
            "--report",
            str(self.report_path),
        ]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKPOOL_")}
        env[RUNS_ENV] = str(harness.runs)
        env["PYTHONPATH"] = str(ROOT)
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    async def ready(self) -> None:
        """Wait until the pool has started (its channel open, consumers claiming)."""

        def check() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker {self.name} exited with {self.proc.returncode} before it was "
                    f"ready:\n{self.stderr()}"
                )
            return "ready" in self.out_path.read_text()

        await wait_until(check, f"worker {self.name} to start")

    def kill9(self) -> None:
        """``kill -9``: no drain, no release, no flush; the process just ends."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM: the worker drains within its deadline, then exits."""
        self.proc.send_signal(signal.SIGTERM)

    async def exited(self, timeout: float = PATIENCE) -> int:
        """Wait for the process to end; its exit status."""
        await wait_until(
            lambda: self.proc.poll() is not None, f"worker {self.name} to exit", timeout
        )
        return self.proc.returncode

    async def stop(self) -> dict[str, Any]:
        """SIGTERM, wait for the exit, check its pool's accounting; its report."""
        self.terminate()
        code = await self.exited()
        stderr = self.stderr()
        assert "Traceback" not in stderr, stderr
        report: dict[str, Any] = json.loads(self.report_path.read_text())
        assert code == report["exit"], (code, report)
        stats = report["stats"]
        assert stats["delivered"] == (
            stats["succeeded"] + stats["failed"] + stats["released"] + stats["rescheduled"]
        ), stats
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Harness:
    """One test's SQLite file, its runs directory and its worker processes."""

    def __init__(self, tmp: Path, backend: str) -> None:
        self.tmp = tmp
        self.backend = backend
        self.db = tmp / "jobs.db"
        self.runs = tmp / "runs"
        self.runs.mkdir()
        self.workers: list[Worker] = []
        self._count = 0

    def worker(self, **options: Any) -> Worker:
        """Start a worker process (options: consumers, lease, max_deliveries, deadline)."""
        self._count += 1
        started = Worker(self, f"w{self._count}", **options)
        self.workers.append(started)
        return started

    def channel(self, **options: Any) -> SqliteChannel:
        """A channel on the test's file, for producing and inspecting (not consuming)."""
        return SqliteChannel(str(self.db), **options)

    def insert_raw(self, name: str, payload: str) -> UUID:
        """Write a message into the file by hand, as a buggy or foreign producer could
        (the channel's table: `workpool._sqlite_sql.SCHEMA`); its id."""
        message_id = uuid.uuid4()
        now = time.time()
        with contextlib.closing(sqlite3.connect(self.db, timeout=10.0)) as conn, conn:
            conn.execute(
                "INSERT INTO workpool_messages (id, queue, name, payload, due_at, "
                "available_at, enqueued_at) VALUES (?, 'default', ?, ?, ?, ?, ?)",
                (str(message_id), name, payload, now, now, now),
            )
        return message_id

    def left_in_store(self) -> int:
        """Messages still in the file (queued, delayed or claimed), dead letters aside."""
        with contextlib.closing(sqlite3.connect(self.db, timeout=10.0)) as conn:
            (count,) = conn.execute("SELECT count(*) FROM workpool_messages").fetchone()
        return int(count)

    def runs_so_far(self) -> list[Run]:
        return read_runs(self.runs)

    def starts(self, item_id: UUID) -> list[Run]:
        """The item's recorded starts, by delivery."""
        runs = [r for r in self.runs_so_far() if r.event == "start" and r.id == item_id]
        return sorted(runs, key=lambda r: r.deliveries)

    def done_ids(self) -> set[UUID]:
        return {r.id for r in self.runs_so_far() if r.event == "done"}

    async def wait_started(self, item_id: UUID, *, deliveries: int) -> None:
        """Wait until the item has started on that delivery."""
        await wait_until(
            lambda: any(r.deliveries == deliveries for r in self.starts(item_id)),
            f"item {item_id} to start (delivery {deliveries})",
        )

    async def dead_letters(self) -> dict[UUID, DeadLetter]:
        channel = self.channel()
        try:
            return {letter.id: letter for letter in await channel.dead_letters(limit=100_000)}
        finally:
            await channel.aclose()

    async def all_settled(self, accepted: Iterable[UUID], timeout: float = PATIENCE) -> None:
        """Wait until every accepted id has succeeded or is in the dead letters."""
        wanted = set(accepted)
        missing: set[UUID] = set(wanted)
        end = time.monotonic() + timeout
        while True:
            dead = await self.dead_letters()
            missing = wanted - self.done_ids() - set(dead)
            if not missing:
                return
            if time.monotonic() > end:
                break
            await anyio.sleep(0.1)
        errors = "\n".join(w.stderr()[-3000:] for w in self.workers)
        raise AssertionError(
            f"{len(missing)} of {len(wanted)} accepted items neither succeeded nor "
            f"were dead-lettered within {timeout} s: {sorted(map(str, missing))[:5]}\n{errors}"
        )

    def close(self) -> None:
        for started in self.workers:
            started.close()
