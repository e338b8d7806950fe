"""No warning, unraisable exception or lost task under a mixed, faulty workload (scenario 14).

The whole suite runs with ``filterwarnings = ["error"]``, and this directory's conftest
fails any test after which asyncio reported a lost task. This test adds a workload
built to provoke each of them, and checks the configuration that guards the rest.
"""

from __future__ import annotations

import gc
import sys
import tomllib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from workpool import (
    BackgroundWorker,
    FullMode,
    RetryPolicy,
    Scope,
    StopToken,
    WorkerPool,
    WorkItem,
)

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_suite_turns_warnings_into_errors() -> None:
    """pytest is configured to fail on any warning (anyio's and trio's habit)."""
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert config["tool"]["pytest"]["ini_options"]["filterwarnings"][0] == "error"


async def test_a_faulty_workload_leaves_no_warning_or_lost_task(
    assert_accounted: Callable[[WorkerPool], None],
) -> None:
    """Failures, retries, timeouts, cancellation at the deadline, async hooks run from sync
    code, hooks that raise and a coroutine passed by mistake: no warning, no unraisable
    exception, no unawaited coroutine."""
    unraisable: list[Any] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append

    async def failing_hook(*args: object) -> None:
        raise RuntimeError("hook failed")

    async def ok(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(0)

    async def fail(scope: Scope, stopping: StopToken) -> None:
        raise ValueError("boom")

    def sync_fail(scope: Scope, stopping: StopToken) -> None:
        raise ValueError("boom")

    async def forever(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(3600)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool = WorkerPool(
                consumers=3,
                capacity=5,
                full_mode=FullMode.DROP_OLDEST,
                shutdown_deadline=0.1,
                cleanup_grace=0.1,
                on_drop=failing_hook,
                on_dead_letter=failing_hook,
                on_abandoned=failing_hook,
            )
            with anyio.fail_after(10):
                async with pool:
                    with pytest.raises(TypeError):
                        pool.enqueue_nowait(ok(None, pool.stopping))  # type: ignore[arg-type]
                    for index in range(60):
                        work = (ok, fail, sync_fail)[index % 3]
                        pool.enqueue_nowait(work, retry=RetryPolicy.exponential(2, initial=0))
                        if index % 7 == 0:
                            await pool.enqueue(forever, timeout=0.01)
                    await pool.join()
                    for _ in range(3):
                        await pool.enqueue(forever)
                    for _ in range(5):
                        await pool.enqueue(ok)

            # an async drop hook called from sync code with no pool to run it
            worker = BackgroundWorker(1, FullMode.DROP_NEWEST, on_drop=failing_hook)
            worker.enqueue_nowait(ok)
            worker.enqueue_nowait(ok)
            items: list[WorkItem] = worker.take_all()
            del items, worker
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    assert [str(w.message) for w in caught] == []
    assert unraisable == []
    assert_accounted(pool)
