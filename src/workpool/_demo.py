"""The demo: a pool from settings on simulated jobs, watched live, then its report.

``python -m workpool demo`` (or the ``workpool demo`` console script) runs a mix of
quick, slow, sync (threaded) and failing jobs, some of them queued by simulated
requests that share their session with them. With rich installed and a terminal
it shows a live view; otherwise (CI, a pipe) it prints plain lines. Ctrl-C (or
SIGTERM) drains the pool gracefully; a second one stops at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ._channel import FullMode
from ._demo_view import LiveView, PlainView, run_with_view, summary_lines
from ._exceptions import QueueFullError, SettingsError
from ._retry import RetryPolicy
from ._runner import exit_status
from ._session import SessionManager
from ._settings import PoolSettings

if TYPE_CHECKING:
    import argparse

    from ._item import WorkItem
    from ._pool import WorkerPool
    from ._scope import Scope
    from ._session import Session
    from ._stats import DrainReport, PoolStats
    from ._stop import StopToken

__all__ = ["EXIT_BAD_SETTINGS", "DemoOptions", "add_demo_parser", "run_demo"]

# A bad WORKPOOL_* value: like a bad command-line option (argparse exits 2 too).
EXIT_BAD_SETTINGS = 2

# The job mix: (kind, weight). "flaky" fails four times as often as the others;
# "request" is a simulated request that queues two items in its own session and
# leaves before they run.
_MIX = (("quick", 45), ("slow", 15), ("sync", 15), ("flaky", 8), ("request", 17))


class SimulatedFailure(Exception):
    """What a job raises when the dice say it fails this attempt."""


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs; ``None`` means "from the settings" (``WORKPOOL_*``)."""

    items: int = 300
    consumers: int | None = None
    failure_rate: float = 0.15
    deadline: float | None = None
    duration: float = 5.0
    backend: str = "asyncio"
    live: bool | None = None
    seed: int | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if self.items < 1:
            raise ValueError(f"items must be at least 1, got {self.items}")
        if self.consumers is not None and self.consumers < 1:
            raise ValueError(f"consumers must be at least 1, got {self.consumers}")
        if not 0 <= self.failure_rate < 1:
            raise ValueError(f"failure_rate must be in [0, 1), got {self.failure_rate}")
        if self.deadline is not None and self.deadline < 0:
            raise ValueError(f"deadline must be zero or more seconds, got {self.deadline}")
        if not self.duration > 0:
            raise ValueError(f"duration must be a positive number of seconds, got {self.duration}")
        if self.backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', got {self.backend!r}")


class _Jobs:
    """The simulated work: durations scale with the demo's duration."""

    def __init__(self, options: DemoOptions) -> None:
        self.rng = random.Random(options.seed)
        self.failure_rate = options.failure_rate
        self.scale = options.duration / 5.0
        self.sessions_shared = 0
        self.sessions_ended = 0

    def _maybe_fail(self, scope: Scope, rate: float | None = None) -> None:
        if self.rng.random() < (self.failure_rate if rate is None else rate):
            raise SimulatedFailure(f"{scope.item.name} failed on attempt {scope.attempt}")

    async def flaky(self, scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(self.rng.uniform(0.01, 0.05) * self.scale)
        self._maybe_fail(scope, min(0.95, self.failure_rate * 4))

    async def quick(self, scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(self.rng.uniform(0.005, 0.03) * self.scale)
        self._maybe_fail(scope)

    async def slow(self, scope: Scope, stopping: StopToken) -> None:
        # a long job that finishes early, cleanly, when shutdown begins
        with anyio.move_on_after(self.rng.uniform(0.2, 0.6) * self.scale):
            await stopping.wait()
        self._maybe_fail(scope)

    def sync(self, scope: Scope, stopping: StopToken) -> None:
        time.sleep(self.rng.uniform(0.02, 0.1) * self.scale)  # runs in a worker thread
        self._maybe_fail(scope)

    async def email(self, scope: Scope, stopping: StopToken) -> None:
        assert scope.session.data["user"]  # what the request left in the session
        await anyio.sleep(self.rng.uniform(0.02, 0.08) * self.scale)
        self._maybe_fail(scope)

    async def audit(self, scope: Scope, stopping: StopToken) -> None:
        scope.session.data.setdefault("audited", 0)
        scope.session.data["audited"] += 1
        await anyio.sleep(self.rng.uniform(0.005, 0.02) * self.scale)
        self._maybe_fail(scope)

    def session_ended(self, session: Session) -> None:
        if "user" in session.data:
            self.sessions_ended += 1

    def dead_letter(self, item: WorkItem, exc: BaseException) -> None:
        pass  # a real app would store the item for a person to look at


async def _request(pool: WorkerPool, jobs: _Jobs, retry: RetryPolicy, n: int) -> int:
    """A simulated request: it queues two items in its session and leaves at once."""
    manager = pool.session_manager
    request_scope = f"request-{n}"
    session = manager.create_session(request_scope)
    session.data["user"] = f"user-{n % 17}"
    jobs.sessions_shared += 1
    queued = 0
    try:
        for kind, work in (("request.email", jobs.email), ("request.audit", jobs.audit)):
            queued += 1
            try:
                item = await pool.enqueue(work, session, retry=retry, name=kind)
            except QueueFullError:  # WORKPOOL_FULL_MODE=reject: counted as rejected
                continue
            # The queued item holds the session until it has run, so the session
            # outlives the request (workpool.integrations.starlette does the same).
            manager.add_scope(session, item.id)
    finally:
        await manager.release(session, request_scope)
    return queued


async def _produce(options: DemoOptions, jobs: _Jobs, pool: WorkerPool) -> None:
    """Queue the items, spread over the duration, then wait for them to finish."""
    retry = RetryPolicy.exponential(
        3, initial=0.05 * jobs.scale, maximum=0.5 * jobs.scale, jitter=0.02 * jobs.scale
    )
    kinds = [kind for kind, _ in _MIX]
    weights = [weight for _, weight in _MIX]
    work = {"quick": jobs.quick, "slow": jobs.slow, "sync": jobs.sync, "flaky": jobs.flaky}
    gap = options.duration * 0.8 / options.items
    queued = 0
    n = 0
    while queued < options.items:
        kind = jobs.rng.choices(kinds, weights)[0]
        if kind == "request" and options.items - queued >= 2:
            queued += await _request(pool, jobs, retry, n)
        else:
            kind = "quick" if kind == "request" else kind
            queued += 1
            with contextlib.suppress(QueueFullError):  # counted as rejected
                await pool.enqueue(work[kind], retry=retry, name=kind)
        n += 1
        await anyio.sleep(gap * jobs.rng.uniform(0.0, 2.0))
    await pool.join()


def _use_live(options: DemoOptions, out: TextIO) -> bool:
    if options.live is not None:
        return options.live
    if not out.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


async def _run(
    options: DemoOptions, settings: PoolSettings, out: TextIO
) -> tuple[PoolStats, DrainReport, _Jobs, LiveView | PlainView]:
    from ._pool import WorkerPool

    jobs = _Jobs(options)
    overrides: dict[str, Any] = {
        "session_manager": SessionManager(
            settings.session.default_duration, on_end=jobs.session_ended
        ),
        "on_dead_letter": jobs.dead_letter,
    }
    if options.consumers is not None:
        overrides["consumers"] = options.consumers
    pool = WorkerPool.from_settings(settings, **overrides)
    deadline = options.deadline if options.deadline is not None else settings.shutdown_deadline
    full_mode = settings.full_mode
    print(
        f"workpool demo: {options.items} items over {options.duration:.1f} s, "
        f"{pool.consumers} consumers, capacity {settings.capacity} ({FullMode(full_mode).value}), "
        f"failure rate {options.failure_rate:.0%} per attempt (flaky jobs x4), 3 attempts, "
        f"deadline {deadline:.1f} s, {options.backend}; Ctrl-C drains",
        file=out,
    )
    out.flush()
    view: LiveView | PlainView = (
        LiveView(out, options.items, deadline)
        if _use_live(options, out)
        else PlainView(out, min(1.0, max(0.25, options.duration / 10)), options.items, deadline)
    )
    report = await run_with_view(pool, view, partial(_produce, options, jobs), deadline)
    return pool.stats(), report, jobs, view


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo; return the exit status (0 when every item was accounted as finished).

    On a durable channel (``options.channel`` or ``WORKPOOL_CHANNEL``) the jobs are
    named tasks stored in it, and a run that was killed is resumed (`_demo_durable`).

    Raises:
        SettingsError: a ``WORKPOOL_*`` setting is bad (before anything runs).
        ValueError: ``options.channel`` is not a channel URL.
    """
    out = out if out is not None else sys.stdout
    settings = PoolSettings()
    if options.channel is not None:
        from ._open import parse_channel_url

        parse_channel_url(options.channel)
        settings = settings.model_copy(update={"channel": options.channel})
        settings.check_channel_options()
    if settings.channel_url.durable:
        from ._demo_durable import run_durable_demo

        live = dataclasses.replace(options, live=_use_live(options, out))
        return run_durable_demo(live, settings, out)
    stats, report, jobs, view = anyio.run(
        partial(_run, options, settings, out), backend=options.backend
    )
    lines = summary_lines(stats, report, jobs.sessions_shared, jobs.sessions_ended)
    view.summary(lines, stats, report)
    return exit_status(report)


def add_demo_parser(commands: Any) -> None:
    """The ``demo`` command, added to the subparsers *commands* of ``workpool``."""
    demo = commands.add_parser(
        "demo",
        help="run a pool on simulated jobs and watch it",
        description=(
            "Run a pool (configured by WORKPOOL_* settings) on simulated quick, slow, sync "
            "and failing jobs, some sharing a session with a simulated request; show the "
            "stats while they run, then the DrainReport. Ctrl-C drains gracefully. With a "
            "durable --channel the jobs are stored tasks: kill the demo and run it again, "
            "and it finishes the same batch."
        ),
    )
    defaults = DemoOptions()
    demo.add_argument("--items", type=int, default=defaults.items, help="jobs to run (%(default)s)")
    demo.add_argument(
        "--consumers", type=int, default=None, help="consumers (default: WORKPOOL_CONSUMERS, 4)"
    )
    demo.add_argument(
        "--failure-rate",
        type=float,
        default=defaults.failure_rate,
        help="chance that an attempt fails (%(default)s); 3 attempts per job",
    )
    demo.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="drain deadline in seconds (default: WORKPOOL_SHUTDOWN_DEADLINE, 30)",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help="seconds over which the jobs arrive; job lengths scale with it (%(default)s)",
    )
    demo.add_argument(
        "--channel",
        metavar="URL",
        default=None,
        help="a durable channel, e.g. sqlite:///demo.db (default: WORKPOOL_CHANNEL, memory:)",
    )
    demo.add_argument("--backend", choices=("asyncio", "trio"), default=defaults.backend)
    view = demo.add_mutually_exclusive_group()
    view.add_argument("--live", dest="live", action="store_true", default=None, help="live view")
    view.add_argument("--plain", dest="live", action="store_false", help="plain lines")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.set_defaults(run=partial(run_demo_command, demo))


def run_demo_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``workpool demo``: check the arguments, run the demo, return the exit status."""
    try:
        options = DemoOptions(
            items=args.items,
            consumers=args.consumers,
            failure_rate=args.failure_rate,
            deadline=args.deadline,
            duration=args.duration,
            backend=args.backend,
            live=args.live,
            seed=args.seed,
            channel=args.channel,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if options.backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            parser.error("the trio backend needs trio: pip install 'workpool[trio]'")
    if options.live:
        try:
            import rich  # noqa: F401
        except ImportError:
            parser.error("the live view needs rich: pip install 'workpool[rich]'")
    if options.channel is not None:
        from ._open import parse_channel_url

        try:
            parse_channel_url(options.channel)
        except ValueError as exc:
            parser.error(f"--channel: {exc}")
    try:
        return run_demo(options)
    except SettingsError as exc:
        # One line an operator can act on, not a traceback through the event loop.
        reasons = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
        print(f"workpool demo: bad setting: {reasons}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
