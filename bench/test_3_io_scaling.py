"""Scenario 3: I/O-bound scaling, 2,000 items of ``await anyio.sleep(0.01)`` for 1, 10,
50 and 200 consumers, against the ideal ``items x 10 ms / consumers``.

"bare anyio tasks" is the yardstick for overhead: N tasks in a task group, each
sleeping its share of the items one after the other, with no queue at all. Timer
overshoot is in every row alike. taskiq (no consumer limit) and Starlette (one at a
time) cannot be set to N consumers and sit this one out.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _peers import run_aiojobs, run_anyio_stream, run_asyncio_queue, run_workpool
from _support import CAPACITY, run_case

if TYPE_CHECKING:
    from collections.abc import Callable

ITEMS = 2000
DELAY = 0.01
CONSUMERS = (1, 10, 50, 200)


async def sleep_work(scope: Any, stopping: Any) -> None:
    """An I/O-bound work function: 10 ms of waiting."""
    await anyio.sleep(DELAY)


async def sleep_job() -> None:
    """An I/O-bound job: 10 ms of waiting."""
    await anyio.sleep(DELAY)


async def run_bare_tasks(items: int, consumers: int) -> None:
    """*consumers* tasks, each doing its share of the sleeps in turn."""

    async def share(count: int) -> None:
        for _ in range(count):
            await sleep_job()

    base, extra = divmod(items, consumers)
    async with anyio.create_task_group() as task_group:
        for index in range(consumers):
            task_group.start_soon(share, base + (index < extra))


def _cases(consumers: int) -> dict[str, Callable[[], Any]]:
    size = {"consumers": consumers, "capacity": CAPACITY}
    return {
        "workpool": lambda: partial(run_workpool, [sleep_work] * ITEMS, **size),
        "aiojobs": lambda: partial(run_aiojobs, [sleep_job] * ITEMS, **size),
        "asyncio.Queue": lambda: partial(run_asyncio_queue, [sleep_job] * ITEMS, **size),
        "anyio stream (floor)": lambda: partial(run_anyio_stream, [sleep_job] * ITEMS, **size),
        "bare anyio tasks": lambda: partial(run_bare_tasks, ITEMS, consumers),
    }


LABELS = list(_cases(1))


@pytest.mark.parametrize("consumers", CONSUMERS)
@pytest.mark.parametrize("label", LABELS)
def test_io_scaling(benchmark: Any, portal: Any, label: str, consumers: int) -> None:
    """2,000 sleeps of 10 ms through N consumers."""
    ideal = ITEMS * DELAY / consumers
    # One round of 20 s is enough at 1 consumer; shorter rounds get a few more.
    rounds = 1 if ideal > 5 else 3 if ideal > 1 else 5 if ideal > 0.2 else 10
    run_case(
        benchmark,
        portal,
        _cases(consumers)[label],
        group=f"3 I/O-bound, {consumers} consumer{'s' if consumers > 1 else ''}",
        label=label,
        items=ITEMS,
        rounds=rounds,
        consumers=consumers,
        ideal=ideal,
    )
