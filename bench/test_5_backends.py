"""Scenario 5: scenario 1 (no-op throughput) on asyncio, uvloop and trio.

workpool runs on anyio, so it runs on all three; the anyio memory stream floor shows
what each backend itself costs.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from typing import TYPE_CHECKING

import pytest

from _peers import noop_job, noop_work, run_anyio_stream, run_workpool
from _support import CAPACITY, CONSUMERS, ITEMS, run_case

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.from_thread import BlockingPortal
    from pytest_benchmark.fixture import BenchmarkFixture

GROUP = "5 backends (no-op throughput)"
SIZE = {"consumers": CONSUMERS, "capacity": CAPACITY}
BACKENDS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
    "trio",
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("impl", ["workpool", "anyio stream (floor)"])
def test_backends(
    benchmark: BenchmarkFixture,
    portals: Callable[[str], BlockingPortal],
    impl: str,
    backend: str,
) -> None:
    """10,000 no-op items through 4 consumers, on each backend."""
    if impl == "workpool":
        make = lambda: partial(run_workpool, [noop_work] * ITEMS, **SIZE)  # noqa: E731
    else:
        make = lambda: partial(run_anyio_stream, [noop_job] * ITEMS, **SIZE)  # noqa: E731
    run_case(
        benchmark,
        portals(backend),
        make,
        group=GROUP,
        label=f"{impl} on {backend}",
        items=ITEMS,
        impl=impl,
        backend=backend,
    )
