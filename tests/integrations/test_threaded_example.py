"""examples/threaded_producer.py: WSGI request threads queue work with enqueue_threadsafe."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from workpool import WorkerPool


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
