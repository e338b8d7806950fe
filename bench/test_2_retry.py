"""Scenario 2: no-op items with a retry policy attached, on the success path, and with
one failure then success; 4 consumers, capacity 1000.

The peers retry the way each one offers: aiojobs through tenacity's ``AsyncRetrying``
around the job, taskiq through its ``SimpleRetryMiddleware``, the loops by hand. All
allow 3 attempts with no wait between them. Starlette's background tasks have no
retries and sit this one out.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from taskiq.middlewares import SimpleRetryMiddleware

from _peers import (
    ATTEMPTS,
    flaky_job,
    flaky_work,
    noop_job,
    noop_work,
    run_aiojobs,
    run_anyio_stream,
    run_asyncio_queue,
    run_taskiq,
    run_workpool,
)
from _support import CAPACITY, CONSUMERS, ITEMS, run_case
from workpool import RetryPolicy, retry_policy

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

SIZE = {"consumers": CONSUMERS, "capacity": CAPACITY}
POLICY = RetryPolicy()  # 3 attempts, no wait, retry on any Exception


@retry_policy(POLICY)
async def noop_work_with_policy(scope: Any, stopping: Any) -> None:
    """A no-op work function with a retry policy attached."""


def _taskiq_retry() -> dict[str, Any]:
    return {
        "middlewares": [SimpleRetryMiddleware(default_retry_count=ATTEMPTS)],
        "retry_on_error": True,
    }


# -- success path --------------------------------------------------------------------

SUCCESS = "2a retry policy, success path"
SUCCESS_CASES: dict[str, Callable[[], Any]] = {
    "workpool, no policy": lambda: partial(run_workpool, [noop_work] * ITEMS, **SIZE),
    "workpool": lambda: partial(run_workpool, [noop_work_with_policy] * ITEMS, **SIZE),
    "aiojobs + tenacity": lambda: partial(run_aiojobs, [noop_job] * ITEMS, tenacity=True, **SIZE),
    "taskiq + SimpleRetryMiddleware": lambda: partial(
        run_taskiq, [()] * ITEMS, noop_job, **_taskiq_retry()
    ),
    "asyncio.Queue + retry loop": lambda: partial(
        run_asyncio_queue, [noop_job] * ITEMS, attempts=ATTEMPTS, **SIZE
    ),
    "anyio stream + retry loop": lambda: partial(
        run_anyio_stream, [noop_job] * ITEMS, attempts=ATTEMPTS, **SIZE
    ),
}


@pytest.mark.parametrize("label", list(SUCCESS_CASES))
def test_retry_success(benchmark: BenchmarkFixture, portal: BlockingPortal, label: str) -> None:
    """10,000 no-op items that succeed at once, under a retry policy."""
    run_case(benchmark, portal, SUCCESS_CASES[label], group=SUCCESS, label=label, items=ITEMS)


# -- one failure, then success ----------------------------------------------------------

FLAKY = "2b retry policy, one failure then success"

#: taskiq's messages carry arguments, not closures: its items share this set.
_taskiq_seen: set[int] = set()


async def taskiq_flaky(key: int) -> None:
    """`flaky_job` on the shared set, for taskiq."""
    await flaky_job(_taskiq_seen, key)


def _flaky_works() -> list[Any]:
    seen: set[int] = set()
    return [partial(flaky_work, seen, key) for key in range(ITEMS)]


def _flaky_jobs() -> list[Any]:
    seen: set[int] = set()
    return [partial(flaky_job, seen, key) for key in range(ITEMS)]


def _taskiq_flaky_round() -> Any:
    _taskiq_seen.clear()
    return partial(run_taskiq, [(key,) for key in range(ITEMS)], taskiq_flaky, **_taskiq_retry())


FLAKY_CASES: dict[str, Callable[[], Any]] = {
    "workpool": lambda: partial(run_workpool, _flaky_works(), default_retry=POLICY, **SIZE),
    "aiojobs + tenacity": lambda: partial(run_aiojobs, _flaky_jobs(), tenacity=True, **SIZE),
    "taskiq + SimpleRetryMiddleware": _taskiq_flaky_round,
    "asyncio.Queue + retry loop": lambda: partial(
        run_asyncio_queue, _flaky_jobs(), attempts=ATTEMPTS, **SIZE
    ),
    "anyio stream + retry loop": lambda: partial(
        run_anyio_stream, _flaky_jobs(), attempts=ATTEMPTS, **SIZE
    ),
}


@pytest.mark.parametrize("label", list(FLAKY_CASES))
def test_retry_once(benchmark: BenchmarkFixture, portal: BlockingPortal, label: str) -> None:
    """10,000 items that each fail once, then succeed on the retry."""
    run_case(benchmark, portal, FLAKY_CASES[label], group=FLAKY, label=label, items=ITEMS)
