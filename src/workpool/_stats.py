"""Counters, timing summaries, and the shutdown report."""

from __future__ import annotations

import math
import struct
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from ._item import WorkItem

__all__ = ["DrainReport", "PoolStats", "TimingSummary", "Timings"]


@final
@dataclass(frozen=True, slots=True)
class TimingSummary:
    """A summary of durations in seconds.

    ``count``, ``mean`` and ``max`` cover every sample; the percentiles cover the
    most recent samples (up to 10,000), so they follow current behaviour.
    """

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0


@final
class Timings:
    """Records durations cheaply: one list append per sample, folded in batches.

    Samples go to the `pending` list (a list append is a fraction of the cost of an
    ``array`` one, which parses its argument). Each time it holds `chunk` of them
    they are folded: into the running count, total and maximum (``sum`` and ``max``
    run in C), and packed into an 8-byte-per-sample array kept for the percentiles,
    the last *size* samples of them. Two samples per item are recorded on the pool's
    hot path, so the item runner binds `append` once, and the consumers call `fold`
    when `pending` is full (`add` does both, for everyone else); `pending` may then
    run a few samples past `chunk`.

    Attributes:
        append: appends one sample to `pending` (the list's own ``append``; the list
            is never replaced, so it can be bound once).
        pending: the samples not yet folded.
        chunk: how many samples `pending` holds before it is folded.
    """

    __slots__ = ("_chunks", "_count", "_max", "_total", "append", "chunk", "pending", "size")

    def __init__(self, size: int = 10_000, chunk: int = 1_000) -> None:
        self.size = size
        self.chunk = min(chunk, size)
        self.pending: list[float] = []
        self.append = self.pending.append
        # The folded samples of the percentile window, newest last, packed.
        self._chunks: deque[array[float]] = deque(maxlen=-(-size // self.chunk))
        self._count = 0
        self._total = 0.0
        self._max = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration."""
        pending = self.pending
        pending.append(seconds)
        if len(pending) >= self.chunk:
            self.fold()

    def fold(self) -> None:
        """Fold the pending samples into the totals and the percentile window."""
        pending = self.pending
        if not pending:
            return
        self._count += len(pending)
        self._total += sum(pending)
        self._max = max(self._max, max(pending))
        packed = array("d")
        packed.frombytes(struct.pack(f"{len(pending)}d", *pending))
        self._chunks.append(packed)
        del pending[:]

    @property
    def count(self) -> int:
        """How many durations were recorded."""
        return self._count + len(self.pending)

    @property
    def total(self) -> float:
        """The sum of every duration recorded."""
        return self._total + sum(self.pending)

    @property
    def max(self) -> float:
        """The longest duration recorded."""
        pending = self.pending
        return max(self._max, max(pending)) if pending else self._max

    def summary(self) -> TimingSummary:
        """A `TimingSummary` of what was recorded."""
        count = self.count
        if not count:
            return TimingSummary()
        recent: list[float] = []
        for packed in self._chunks:
            recent.extend(packed)
        recent.extend(self.pending)
        ordered = sorted(recent[-self.size :])
        return TimingSummary(
            count=count,
            mean=self.total / count,
            p50=_percentile(ordered, 0.50),
            p95=_percentile(ordered, 0.95),
            p99=_percentile(ordered, 0.99),
            max=self.max,
        )


def _percentile(ordered: list[float], q: float) -> float:
    # nearest-rank: the smallest sample with at least q of the samples at or below it
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@final
@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool's counters (lifetime totals) and timings.

    Once the pool has shut down,
    ``enqueued == succeeded + failed + dropped + cancelled + abandoned``; on a
    durable channel, ``delivered == succeeded + failed + released + rescheduled``.
    """

    consumers: int
    busy: int
    queued: int
    capacity: int | None
    enqueued: int
    succeeded: int
    failed: int
    retried: int
    dead_lettered: int
    dropped: int
    rejected: int
    timed_out: int
    cancelled: int
    abandoned: int
    wait_time: TimingSummary = field(default_factory=TimingSummary)
    run_time: TimingSummary = field(default_factory=TimingSummary)
    running: bool = False
    delivered: int = 0
    """Items claimed from a durable channel by this pool (0 in memory)."""
    redelivered: int = 0
    """Deliveries beyond an item's first, seen by this pool."""
    released: int = 0
    """Items handed back to a durable channel's store at shutdown."""
    rescheduled: int = 0
    """Items put back in a durable store for a retry later than ``max_local_backoff``."""

    @property
    def finished(self) -> int:
        """Items in a final state: succeeded, failed, dropped, cancelled or abandoned."""
        return self.succeeded + self.failed + self.dropped + self.cancelled + self.abandoned

    def as_dict(self) -> dict[str, object]:
        """The snapshot as plain data (e.g. for a JSON endpoint)."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, TimingSummary):
                value = {k: getattr(value, k) for k in value.__dataclass_fields__}
            out[name] = value
        return out


@final
@dataclass(frozen=True, slots=True)
class DrainReport:
    """What shutdown did.

    Attributes:
        succeeded: items that succeeded over the pool's life.
        failed: items that failed for good over the pool's life.
        cancelled: items cancelled in flight at the deadline.
        abandoned: accepted items taken out of the channel unstarted.
        elapsed: seconds the drain took.
        deadline_hit: whether the deadline passed before the channel emptied.
        dropped: items dropped by a full channel over the pool's life.
        released: items of a durable channel cancelled at the deadline and handed
            back to its store (they run again elsewhere or later).
    """

    succeeded: int
    failed: int
    cancelled: tuple[WorkItem, ...]
    abandoned: tuple[WorkItem, ...]
    elapsed: float
    deadline_hit: bool
    dropped: int = 0
    released: tuple[WorkItem, ...] = ()

    @property
    def clean(self) -> bool:
        """True when nothing was cancelled or abandoned."""
        return not self.cancelled and not self.abandoned
