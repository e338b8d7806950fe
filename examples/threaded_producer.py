"""Producers in sync frameworks (Flask, Django, any WSGI app): ``enqueue_threadsafe``.

A sync framework handles each request on a thread of its own, with no event loop.
The pool runs on an event loop in one background thread (anyio's blocking portal),
started with the app and drained when it stops; request threads hand work to it
with ``pool.enqueue_threadsafe(...)``, which blocks the request thread only as
``enqueue`` would wait (a full channel in ``WAIT`` mode) and returns the `WorkItem`.

In Flask it reads::

    background = BackgroundPool()
    background.start()                       # at startup (atexit: background.stop())

    @app.post("/signup")
    def signup():
        address = request.form["email"]
        background.pool.enqueue_threadsafe(partial(send_welcome_email, address))
        return "", 202

Django: start it in ``AppConfig.ready()`` and call ``enqueue_threadsafe`` from views.

This file is a plain WSGI app, so it runs with nothing but the standard library::

    python examples/threaded_producer.py          # serves on 127.0.0.1:8000 (--port)
    curl -X POST 'localhost:8000/signup?email=ada@example.com'

SIGTERM (a container stopping) or Ctrl-C stops taking requests and drains the pool
within ``WORKPOOL_SHUTDOWN_DEADLINE``; a second signal stops at once. The summary
counts every accepted item, and the exit status is 0 only when none was cancelled
or abandoned, so a supervisor can tell a clean stop from a lossy one.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from anyio.from_thread import start_blocking_portal

from workpool import DrainReport, Scope, StopToken, WorkerPool, exit_status

logger = logging.getLogger("signup")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

# What the background work "sent"; a real app would talk to a mail API.
outbox: list[str] = []
_outbox_lock = threading.Lock()


def send_welcome_email(address: str, scope: Scope, stopping: StopToken) -> None:
    """Sync work: it runs in one of the pool's worker threads, never on the loop."""
    time.sleep(0.01)  # the mail API call
    with _outbox_lock:
        outbox.append(address)
    logger.info("welcome mail sent to %s (item %s)", address, scope.item.id)


class BackgroundPool:
    """A `WorkerPool` running on an event loop in a background thread.

    Args:
        factory: makes the pool (default ``WorkerPool.from_settings``).
        backend: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(
        self, factory: Callable[[], WorkerPool] = WorkerPool.from_settings, backend: str = "asyncio"
    ) -> None:
        self._factory = factory
        self._backend = backend
        self._stack: ExitStack | None = None
        self._pool: WorkerPool | None = None

    @property
    def pool(self) -> WorkerPool:
        """The running pool.

        Raises:
            RuntimeError: not started.
        """
        if self._pool is None:
            raise RuntimeError("the background pool is not running: call start() first")
        return self._pool

    def start(self) -> WorkerPool:
        """Start the loop thread and the pool on it; return the pool."""
        if self._stack is not None:
            raise RuntimeError("already started")
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal(self._backend))
            pool = self._factory()
            running: AbstractContextManager[WorkerPool] = portal.wrap_async_context_manager(pool)
            self._pool = stack.enter_context(running)
            self._stack = stack.pop_all()
        return pool

    def stop(self) -> DrainReport:
        """Drain the pool (its ``shutdown_deadline``), then stop the loop thread."""
        stack, self._stack = self._stack, None
        pool = self.pool
        if stack is not None:
            stack.close()  # leaves `async with pool` on the loop: the drain
        assert pool.report is not None
        return pool.report


background = BackgroundPool()


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app: ``POST /signup?email=...`` queues the welcome email and answers 202."""
    if environ.get("PATH_INFO") != "/signup" or environ.get("REQUEST_METHOD") != "POST":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    address = query.get("email", [""])[0]
    if "@" not in address:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"email=... is required\n"]
    item = background.pool.enqueue_threadsafe(
        partial(send_welcome_email, address), name="send_welcome_email"
    )
    start_response("202 Accepted", [("Content-Type", "text/plain")])
    return [f"queued {item.id}\n".encode()]


def summary(report: DrainReport) -> str:
    """One line that accounts for every item the drain saw."""
    return (
        f"drained in {report.elapsed:.2f} s: {report.succeeded} sent, {report.failed} failed, "
        f"{len(report.cancelled)} cancelled, {len(report.abandoned)} abandoned"
    )


def stop_and_report(background: BackgroundPool) -> int:
    """Drain the pool, print the summary; return the exit status (0: nothing left unfinished)."""
    report = background.stop()
    print(summary(report), flush=True)
    return exit_status(report)


def _interrupt(signum: int, frame: object) -> None:
    # A second signal during the drain stops the process at once (default action).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise KeyboardInterrupt  # leaves serve_forever() as Ctrl-C does


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve the app until SIGTERM or Ctrl-C, then drain; return the exit status."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    background.start()
    try:
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        with make_server(host, port, app, ThreadingWSGIServer) as server:
            print(f"serving on http://{host}:{server.server_port} (Ctrl-C to stop)", flush=True)
            server.serve_forever()
    except KeyboardInterrupt:
        print("stopping: draining the pool", flush=True)
    except BaseException:
        background.stop()  # e.g. the port is taken: still drain what was queued
        raise
    return stop_and_report(background)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A WSGI app that queues work from its threads.")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    logging.basicConfig(level=logging.INFO)
    sys.exit(serve(port=parser.parse_args().port))
