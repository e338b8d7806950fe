"""The accounting invariants of a pool, checked by many tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workpool import WorkerPool

__all__ = ["assert_accounted", "assert_delivered_accounted", "assert_shut_down_accounted"]


def assert_accounted(pool: WorkerPool) -> None:
    """Every accepted item ended one way: ``enqueued == succeeded + failed + dropped
    + cancelled + abandoned``."""
    stats = pool.stats()
    assert stats.enqueued == (
        stats.succeeded + stats.failed + stats.dropped + stats.cancelled + stats.abandoned
    ), stats


def assert_shut_down_accounted(pool: WorkerPool) -> None:
    """`assert_accounted`, on a pool that has shut down with nothing left queued."""
    stats = pool.stats()
    assert not stats.running
    assert stats.queued == 0
    assert_accounted(pool)


def assert_delivered_accounted(pool: WorkerPool) -> None:
    """A durable pool that has shut down: every delivery ended one of four ways,
    ``delivered == succeeded + failed + released + rescheduled``."""
    stats = pool.stats()
    assert not stats.running
    assert stats.delivered == (
        stats.succeeded + stats.failed + stats.released + stats.rescheduled
    ), stats
