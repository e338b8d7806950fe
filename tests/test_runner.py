"""The signal-aware runner: drain on SIGTERM, stop at once on a second one, exit status."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from workpool import PoolClosedError, WorkerPool
from workpool._runner import (
    EXIT_OK,
    EXIT_UNFINISHED,
    exit_status,
    run_until_signalled,
    serve_until_signalled,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from workpool import Scope, StopToken

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# A worker process: MODE "graceful" runs items that finish once shutdown begins;
# "hard" runs items that ignore shutdown, so only a second signal ends them.
SCRIPT = """
import sys
import anyio
from workpool import PoolClosedError, WorkerPool
from workpool._runner import run_until_signalled

mode, backend = sys.argv[1], sys.argv[2]
pool = WorkerPool(consumers=2, shutdown_deadline=30.0)

def say(text):
    print(text, flush=True)

async def polite(scope, stopping):
    await stopping.wait()
    try:
        pool.enqueue_nowait(polite)
    except PoolClosedError:
        say("closed")

async def stubborn(scope, stopping):
    await stopping.wait()
    say("stopping")
    await anyio.sleep(60)

async def main(pool):
    for _ in range(20 if mode == "graceful" else 10):
        await pool.enqueue(polite if mode == "graceful" else stubborn)
    say("ready")
    await anyio.sleep_forever()

code = run_until_signalled(pool, main, backend=backend)
report = pool.report
say(f"report succeeded={report.succeeded} cancelled={len(report.cancelled)} "
    f"abandoned={len(report.abandoned)} deadline_hit={report.deadline_hit}")
sys.exit(code)
"""


class Worker:
    """A worker process whose stdout lines are read in a thread, with bounded waits."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {text!r} within {timeout} s; saw {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = 10.0) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


@pytest.fixture
def worker_process() -> Iterator[list[Worker]]:
    """Worker processes started by a test, killed if the test leaves them running."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(timeout=5)
        for stream in (worker.proc.stdout, worker.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_drains_every_queued_item_and_exits_0(
    backend: str, worker_process: list[Worker]
) -> None:
    """SIGTERM closes intake and drains: queued items all run, exit status 0."""
    worker = Worker("graceful", backend)
    worker_process.append(worker)
    worker.wait_for("ready")
    worker.signal(signal.SIGTERM)
    report = worker.wait_for("report")
    code, stderr = worker.finish()
    assert report == "report succeeded=20 cancelled=0 abandoned=0 deadline_hit=False"
    assert worker.seen.count("closed") == 20  # enqueue after the signal: PoolClosedError
    assert code == EXIT_OK
    assert "SIGTERM received: draining" in stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_second_sigterm_cancels_at_once_and_exits_non_zero(
    backend: str, worker_process: list[Worker]
) -> None:
    """A second SIGTERM during a long drain cancels in-flight items at once: exit 1."""
    worker = Worker("hard", backend)
    worker_process.append(worker)
    worker.wait_for("ready")
    worker.signal(signal.SIGTERM)
    worker.wait_for("stopping")  # the drain has begun (deadline 30 s)
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    report = worker.wait_for("report")
    code, stderr = worker.finish()
    assert time.monotonic() - signalled < 5.0  # not the 30 s deadline
    assert report == "report succeeded=0 cancelled=2 abandoned=8 deadline_hit=True"
    assert code == EXIT_UNFINISHED
    assert "received again" in stderr


async def _noop(scope: Scope, stopping: StopToken) -> None:
    pass


@pytest.mark.anyio
async def test_pool_drains_when_main_returns() -> None:
    """Without a signal, the pool drains as soon as main returns; the report is clean."""

    async def main(pool: WorkerPool) -> None:
        for _ in range(5):
            await pool.enqueue(_noop)

    with anyio.fail_after(10):
        report = await serve_until_signalled(lambda: WorkerPool(consumers=2), main)
    assert report.succeeded == 5
    assert exit_status(report) == EXIT_OK


@pytest.mark.anyio
async def test_exception_in_main_drains_then_propagates_unwrapped() -> None:
    """main's exception propagates as it was, after the pool drained its items."""
    pool = WorkerPool(consumers=1)

    async def main(pool: WorkerPool) -> None:
        await pool.enqueue(_noop)
        raise LookupError("boom")

    with anyio.fail_after(10), pytest.raises(LookupError, match="boom"):
        await serve_until_signalled(pool, main)
    assert pool.report is not None
    assert pool.report.succeeded == 1
    with pytest.raises(PoolClosedError):
        pool.enqueue_nowait(_noop)


@pytest.mark.anyio
async def test_a_second_shutdown_with_a_shorter_deadline_cuts_the_drain_short() -> None:
    """shutdown(0) during a long drain cancels in-flight work now and shares the report."""
    started = anyio.Event()

    async def slow(scope: Scope, stopping: StopToken) -> None:
        started.set()
        await anyio.sleep(60)

    pool = WorkerPool(consumers=1, shutdown_deadline=60.0)
    with anyio.fail_after(10):
        async with pool, anyio.create_task_group() as task_group:
            await pool.enqueue(slow)
            await pool.enqueue(slow)
            await started.wait()
            task_group.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            report = await pool.shutdown(0)
    assert report.deadline_hit
    assert (len(report.cancelled), len(report.abandoned)) == (1, 1)
    assert exit_status(report) == EXIT_UNFINISHED


@pytest.mark.anyio
async def test_the_handlers_in_place_before_are_put_back() -> None:
    """A signal drains the pool, and afterwards SIGTERM and SIGINT have the handlers
    the application had installed, not the default that would kill the process."""
    seen: list[int] = []

    def application_handler(signum: int, frame: object) -> None:
        seen.append(signum)

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, application_handler)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        async def main(pool: WorkerPool) -> None:
            await pool.enqueue(_noop)
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep_forever()

        with anyio.fail_after(10):
            report = await serve_until_signalled(lambda: WorkerPool(consumers=1), main)
        assert report.succeeded == 1
        assert seen == []  # the drain took that signal, not the application
        assert signal.getsignal(signal.SIGTERM) is application_handler
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_run_until_signalled_returns_the_exit_status() -> None:
    """The sync entry point runs the pool from a factory and returns 0 for a clean drain."""

    async def main(pool: WorkerPool) -> None:
        await pool.enqueue(_noop)

    assert run_until_signalled(lambda: WorkerPool(consumers=1), main) == EXIT_OK


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"deadline": -1.0}, ValueError),
        ({"signals": ()}, ValueError),
        ({"pool": "not a pool"}, TypeError),
        ({"pool": lambda: 42}, TypeError),
    ],
)
@pytest.mark.anyio
async def test_bad_arguments_fail_at_the_call(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    """A negative deadline, no signals, or something that is not a pool: a clear error."""
    with pytest.raises(error):
        await serve_until_signalled(**kwargs)  # type: ignore[arg-type]
