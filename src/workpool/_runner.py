"""Run a pool until SIGTERM or SIGINT, then drain it: the shape of a worker process.

Kubernetes, systemd and Docker stop a process with SIGTERM and, after a grace
period, SIGKILL; a person stops it with Ctrl-C. `serve_until_signalled` starts the
pool (and your *main*, if any), and on the first signal closes intake and drains
within the deadline; a second signal during the drain cuts it short at once.
`run_until_signalled` does the same from synchronous code and returns an exit
status: 0 when every accepted item finished, 1 when some were cancelled or
abandoned.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Final

import anyio
import anyio.abc

from ._log import logger
from ._pool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._stats import DrainReport

__all__ = [
    "EXIT_OK",
    "EXIT_UNFINISHED",
    "exit_status",
    "run_until_signalled",
    "serve_until_signalled",
]

#: Every accepted item finished (succeeded, failed for good, or dropped).
EXIT_OK: Final = 0
#: The drain cancelled or abandoned items (deadline passed, or a second signal).
EXIT_UNFINISHED: Final = 1

DEFAULT_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

PoolSource = WorkerPool | Callable[[], WorkerPool] | None
Main = Callable[[WorkerPool], Awaitable[object]]


def exit_status(report: DrainReport) -> int:
    """`EXIT_OK` when the drain left nothing unfinished, else `EXIT_UNFINISHED`.

    Failed and dropped items count as finished: they were accounted for (and
    reached ``on_dead_letter`` / ``on_drop``). Cancelled and abandoned ones did not.
    """
    return EXIT_OK if report.clean else EXIT_UNFINISHED


def _resolve(pool: PoolSource) -> WorkerPool:
    if pool is None:
        return WorkerPool.from_settings()
    if isinstance(pool, WorkerPool):
        return pool
    if callable(pool):
        made = pool()
        if not isinstance(made, WorkerPool):
            raise TypeError(f"the pool factory must return a WorkerPool, got {made!r}")
        return made
    raise TypeError(
        f"expected a WorkerPool, a function returning one, or None (from settings), got {pool!r}"
    )


def _signal_name(signum: int) -> str:  # trio hands over ints
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


async def serve_until_signalled(
    pool: PoolSource = None,
    main: Main | None = None,
    *,
    deadline: float | None = None,
    signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS,
) -> DrainReport:
    """Run *pool* until a signal arrives (or *main* returns), then drain it.

    ::

        async def produce(pool):
            async for job in jobs():
                await pool.enqueue(partial(handle, job))

        report = await workpool.serve_until_signalled(WorkerPool.from_settings, produce)

    On the first of *signals*: intake closes (``enqueue*`` raise `PoolClosedError`),
    the `StopToken` is set, *main* is cancelled, and the pool drains within
    *deadline*. A second signal during the drain cuts it short: in-flight items
    are cancelled and queued ones abandoned at once. Later signals are ignored;
    once this returns, the handlers *signals* had before are back in place.

    Args:
        pool: a `WorkerPool` that has not started, a function returning one (called
            here), or ``None`` for ``WorkerPool.from_settings()``.
        main: ``async def main(pool)``, run once the pool has started: a producer, a
            server... When it returns, the pool drains and this returns; when it
            raises, the pool drains and the exception propagates.
        deadline: seconds the drain may take; default the pool's
            ``shutdown_deadline`` (``WORKPOOL_SHUTDOWN_DEADLINE``).
        signals: the signals that start the drain. Call this in the main thread.

    Returns:
        The pool's `DrainReport`; `exit_status` turns it into a process exit status.
    """
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not (deadline >= 0 and math.isfinite(deadline))
    ):
        raise ValueError(f"deadline must be zero or more seconds, got {deadline!r}")
    if not signals:
        raise ValueError("signals must name at least one signal")
    the_pool = _resolve(pool)
    drain_deadline = the_pool.shutdown_deadline if deadline is None else float(deadline)
    failure: list[BaseException] = []

    with _handlers_restored(signals), anyio.open_signal_receiver(*signals) as received:
        async with the_pool:
            stop = anyio.Event()
            main_scope = anyio.CancelScope()

            async def run_main(main: Main) -> None:
                try:
                    with main_scope:
                        await main(the_pool)
                except Exception as exc:
                    failure.append(exc)
                    logger.error("main raised %s: draining the pool", type(exc).__name__)
                finally:
                    stop.set()

            async def watch_signals() -> None:
                draining = False
                async for signum in received:
                    name = _signal_name(signum)
                    if not draining:
                        draining = True
                        logger.warning(
                            "%s received: draining the pool (deadline %.1f s); "
                            "send it again to stop at once",
                            name,
                            drain_deadline,
                        )
                        stop.set()
                    elif the_pool.report is None:
                        logger.warning(
                            "%s received again: cancelling in-flight items and abandoning "
                            "queued ones now",
                            name,
                        )
                        await the_pool.shutdown(0)
                    else:
                        logger.info("%s received after the drain; ignored", name)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(watch_signals)
                if main is not None:
                    task_group.start_soon(run_main, main)
                logger.info(
                    "pool running with %d consumer(s); SIGTERM or Ctrl-C drains it",
                    the_pool.consumers,
                )
                await stop.wait()
                main_scope.cancel()
                report = await the_pool.shutdown(drain_deadline)
                task_group.cancel_scope.cancel()

    if failure:
        try:
            raise failure[0]
        finally:
            failure.clear()
    return report


@contextmanager
def _handlers_restored(signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """Put back the Python-level handlers *signals* had before: leaving anyio's signal
    receiver on asyncio sets them to ``SIG_DFL``, so an application's own handler (or
    ``SIG_IGN``) would be gone, and a late signal would kill the process."""
    previous = {signum: signal.getsignal(signum) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: installed from C, which Python cannot put back
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


def run_until_signalled(
    pool: PoolSource = None,
    main: Main | None = None,
    *,
    deadline: float | None = None,
    signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS,
    backend: str = "asyncio",
) -> int:
    """`serve_until_signalled` from synchronous code; returns the exit status.

    ::

        if __name__ == "__main__":
            sys.exit(workpool.run_until_signalled(make_pool, main))

    Args:
        pool, main, deadline, signals: as for `serve_until_signalled`.
        backend: ``"asyncio"`` or ``"trio"``.

    Returns:
        `EXIT_OK` (0) when every accepted item finished, `EXIT_UNFINISHED` (1)
        when the drain cancelled or abandoned some.
    """
    report = anyio.run(
        partial(serve_until_signalled, pool, main, deadline=deadline, signals=signals),
        backend=backend,
    )
    return exit_status(report)
