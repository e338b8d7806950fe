"""Reliability suite: shared settings and checks.

Every test here also fails if asyncio reported a lost task ("Task exception was
never retrieved", "Task was destroyed but it is pending") while it ran: those are
logged, not warned, so ``filterwarnings = ["error"]`` alone would not catch them.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers.accounting import assert_shut_down_accounted

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from workpool import WorkerPool

settings.register_profile(
    "reliability",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=False,
    print_blob=True,
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def _no_lost_tasks() -> Iterator[None]:
    """Fail the test if asyncio logged a task that was lost or never awaited."""
    handler = _Collect()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    try:
        yield
        gc.collect()
    finally:
        asyncio_logger.removeHandler(handler)
    assert not handler.messages, f"asyncio reported lost tasks: {handler.messages}"


@pytest.fixture
def assert_accounted() -> Callable[[WorkerPool], None]:
    """Check the accounting invariant of a pool that has shut down."""
    return assert_shut_down_accounted
