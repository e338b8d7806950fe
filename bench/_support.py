"""What every suite shares: event loops that outlive a round, and how a case is timed.

Each backend's event loop runs in a blocking portal (one thread per backend, for the
whole session), so a round is one ``portal.call``: no loop is created or torn down
inside the timed part, and thread pools stay warm across rounds for every peer alike.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

# Scenario 1 (and 2, 5, 8): no-op items, 4 consumers, capacity 1000.
ITEMS = 10_000
# Scenario 1b: the same through the same capacity, ten times the items.
LARGE_ITEMS = 100_000
CONSUMERS = 4
CAPACITY = 1000


def run_case(
    benchmark: BenchmarkFixture,
    portal: BlockingPortal,
    make: Callable[[], Any],
    *,
    group: str,
    label: str,
    items: int,
    budget: float = 1.5,
    min_rounds: int = 3,
    max_rounds: int = 15,
    rounds: int | None = None,
    **extra: Any,
) -> None:
    """Time rounds of one case: *label* (a row) in *group* (a table).

    ``make()`` builds a round outside the timed part: it returns ``run`` (an async
    callable that does the round, timed) or ``(run, cleanup)``. An async *make* runs
    on the loop, for rounds that start from a filled queue.

    Without *rounds*, one untimed warm-up round sizes the number of rounds to fit
    *budget* seconds (within ``min_rounds..max_rounds``). A fixed *rounds* skips the
    warm-up: for the I/O-bound cases, where one round is many seconds.
    """
    benchmark.group = group
    benchmark.extra_info.update(label=label, items=items, **extra)
    on_loop = inspect.iscoroutinefunction(make)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        built = portal.call(make) if on_loop else make()
        run, cleanup = built if isinstance(built, tuple) else (built, None)
        return (run, cleanup), {}

    def target(run: Callable[[], Awaitable[Any]], cleanup: object) -> None:
        portal.call(run)

    def teardown(run: object, cleanup: Callable[[], Awaitable[Any]] | None) -> None:
        if cleanup is not None:
            portal.call(cleanup)

    if rounds is None:
        args, _ = setup()
        started = time.perf_counter()
        target(*args)
        elapsed = time.perf_counter() - started
        teardown(*args)
        rounds = max(min_rounds, min(max_rounds, int(budget / max(elapsed, 1e-9))))
    benchmark.pedantic(target, setup=setup, teardown=teardown, rounds=rounds)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of *samples* (0 < q <= 1)."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]
