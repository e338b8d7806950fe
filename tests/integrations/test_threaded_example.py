"""examples/threaded_producer.py: WSGI request threads queue work with enqueue_threadsafe."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from workpool import WorkerPool

if TYPE_CHECKING:
    from workpool import Scope, StopToken

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "threaded_producer.py"


def call(app: Any, method: str, path: str, query: str = "") -> tuple[str, bytes]:
    """Call a WSGI app directly, as a server thread would."""
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(),
    }
    body = b"".join(app(environ, lambda s, headers: status.append(s)))
    return status[0], body


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_request_threads_queue_work_that_runs_and_drains(
    threadsafe_example: Any, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Eight request threads each queue a welcome mail; all are sent by the time stop() returns."""
    background = threadsafe_example.BackgroundPool(lambda: WorkerPool(consumers=2), backend)
    monkeypatch.setattr(threadsafe_example, "background", background)
    monkeypatch.setattr(threadsafe_example, "outbox", [])
    background.start()
    statuses: list[str] = []
    try:
        threads = [
            threading.Thread(
                target=lambda n=n: statuses.append(
                    call(threadsafe_example.app, "POST", "/signup", f"email=u{n}@example.com")[0]
                )
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        report = background.stop()
    assert statuses == ["202 Accepted"] * 8
    assert sorted(threadsafe_example.outbox) == sorted(f"u{n}@example.com" for n in range(8))
    assert report.succeeded == 8
    assert report.clean


def test_bad_requests_queue_nothing(
    threadsafe_example: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing address is a 400 and an unknown path a 404; neither needs the pool."""
    background = threadsafe_example.BackgroundPool(WorkerPool)
    monkeypatch.setattr(threadsafe_example, "background", background)
    assert call(threadsafe_example.app, "POST", "/signup")[0] == "400 Bad Request"
    assert call(threadsafe_example.app, "GET", "/")[0] == "404 Not Found"
    with pytest.raises(RuntimeError, match="start"):
        background.pool  # noqa: B018


def test_summary_counts_cancelled_and_abandoned_and_the_status_says_so(
    threadsafe_example: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items cut off at the deadline are in the summary, and the exit status is non-zero."""
    release = threading.Event()

    def stuck(scope: Scope, stopping: StopToken) -> None:
        release.wait(10)

    background = threadsafe_example.BackgroundPool(
        lambda: WorkerPool(consumers=1, shutdown_deadline=0.05)
    )
    pool = background.start()
    try:
        started = threading.Event()

        def first(scope: Scope, stopping: StopToken) -> None:
            started.set()
            stuck(scope, stopping)

        pool.enqueue_threadsafe(first)
        pool.enqueue_threadsafe(stuck)
        assert started.wait(10)
        status = threadsafe_example.stop_and_report(background)
    finally:
        release.set()
    out = capsys.readouterr().out
    assert status != 0
    assert ": 0 sent, 0 failed, 1 cancelled, 1 abandoned" in out


def test_clean_drain_exits_zero(
    threadsafe_example: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With everything sent, the summary says so and the status is 0."""
    background = threadsafe_example.BackgroundPool(lambda: WorkerPool(consumers=1))
    pool = background.start()
    pool.enqueue_threadsafe(lambda scope, stopping: None)
    assert threadsafe_example.stop_and_report(background) == 0
    assert ": 1 sent, 0 failed, 0 cancelled, 0 abandoned" in capsys.readouterr().out


def test_sigterm_drains_queued_mail_and_exits_zero() -> None:
    """SIGTERM stops serving, drains (every queued mail is sent) and exits 0 with a summary."""
    env = {**os.environ, "WORKPOOL_CONSUMERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", banner)
        assert found is not None, banner
        for n in range(20):
            request = urllib.request.Request(
                f"http://127.0.0.1:{found[1]}/signup?email=u{n}@example.com", method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 202
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping: draining the pool" in out
    assert re.search(r"drained in [\d.]+ s: 20 sent, 0 failed, 0 cancelled, 0 abandoned", out), out
    assert err.count("welcome mail sent to") == 20
