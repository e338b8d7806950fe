"""OpenTelemetry metrics of a pool.

Install with ``pip install 'workpool[otel]'`` (``opentelemetry-api`` only: the SDK
and exporters are the application's choice)::

    from workpool.integrations.otel import PoolMetrics

    pool = WorkerPool.from_settings()
    metrics = PoolMetrics(pool, pool_name="orders")   # uses the global MeterProvider

Instruments (meter ``workpool``; every one carries ``workpool.pool.name``, the
per-item ones also ``workpool.work.name``):

==================================  =================  ===================================
``workpool.items.enqueued``         counter (async)    accepted by ``enqueue*`` (per pool)
``workpool.items.succeeded``        counter (async)    items that succeeded
``workpool.items.failed``           counter (async)    items that failed for good
``workpool.items.retried``          counter (async)    attempts beyond the first
``workpool.items.cancelled``        counter (async)    in flight at the shutdown deadline
``workpool.items.dropped``          counter (async)    dropped by a full channel
``workpool.items.rejected``         counter (async)    ``QueueFullError`` raised (per pool)
``workpool.items.abandoned``        counter (async)    queued, unstarted at the deadline
``workpool.item.wait.duration``     histogram (s)      enqueue to start
``workpool.item.run.duration``      histogram (s)      start to end, all attempts
``workpool.queue.depth``            gauge (async)      items waiting in the channel
``workpool.queue.capacity``         gauge (async)      the channel's capacity
``workpool.consumers.busy``         gauge (async)      consumers running an item
==================================  =================  ===================================

Per-work-name counts are kept in the `PoolMetrics` as items end and reported,
like ``pool.stats()``, when the metrics are collected; the histograms are recorded
as each item ends. With nothing instrumented, the pool does no extra work at all.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, final

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "workpool.integrations.otel needs the OpenTelemetry API; install it with "
        "pip install 'workpool[otel]'"
    ) from exc

from .. import ItemState, WorkerPool, WorkItem

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from opentelemetry.metrics import MeterProvider

    from .. import PoolStats

__all__ = ["PoolMetrics"]

METER_NAME: Final = "workpool"
POOL_NAME: Final = "workpool.pool.name"
WORK_NAME: Final = "workpool.work.name"

# Bucket advice for both duration histograms, in seconds: background work runs from
# a millisecond to minutes, where the SDK's default boundaries (0, 5, 10, 25, ... as
# if milliseconds) put every item under 5 s in one bucket. Roughly 1-2.5-5 per decade.
DURATION_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip

# Snapshots are reused for this long, so one collection computes stats() once.
_SNAPSHOT_TTL = 0.05
# Work names are few; a program naming each item differently gets no cache past this.
_MAX_CACHED_NAMES = 1024


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("workpool")
    except Exception:  # pragma: no cover - running from a source tree
        return "0"


@final
class _Instruments:
    """One set of instruments per MeterProvider, shared by every instrumented pool.

    OpenTelemetry keeps the callbacks of the first registration of an asynchronous
    instrument and ignores later ones, so the callbacks iterate over the attached
    pools instead of belonging to one.
    """

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(METER_NAME, _version())
        self.attached: dict[int, PoolMetrics] = {}
        self.lock = threading.Lock()
        # Outcome counts are kept per work name by each PoolMetrics (a dict increment
        # per item) and reported when metrics are collected: an SDK counter.add costs
        # several microseconds, more than running a no-op item.
        for outcome, unit, description in (
            ("succeeded", "{item}", "Items that succeeded"),
            ("failed", "{item}", "Items that failed for good"),
            ("retried", "{attempt}", "Attempts beyond the first"),
            ("cancelled", "{item}", "Items cancelled in flight at the shutdown deadline"),
            ("dropped", "{item}", "Items dropped by a full channel"),
        ):
            meter.create_observable_counter(
                f"workpool.items.{outcome}",
                [self._observe_counts(outcome)],
                unit=unit,
                description=description,
            )
        self.wait = meter.create_histogram(
            "workpool.item.wait.duration",
            unit="s",
            description="Time from enqueue to the start of the first attempt",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.run = meter.create_histogram(
            "workpool.item.run.duration",
            unit="s",
            description="Time from the start of the first attempt to the end of the last",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        # Pool-level readings of pool.stats(): (instrument, stats field, unit, description).
        for name, field, unit, description in (
            ("workpool.items.enqueued", "enqueued", "{item}", "Items accepted by enqueue"),
            (
                "workpool.items.rejected",
                "rejected",
                "{item}",
                "Enqueues refused with QueueFullError",
            ),
            (
                "workpool.items.abandoned",
                "abandoned",
                "{item}",
                "Queued items taken out unstarted at the shutdown deadline",
            ),
        ):
            meter.create_observable_counter(
                name, [self._observe(field)], unit=unit, description=description
            )
        for name, field, unit, description in (
            ("workpool.queue.depth", "queued", "{item}", "Items waiting in the channel"),
            (
                "workpool.queue.capacity",
                "capacity",
                "{item}",
                "How many items the channel holds",
            ),
            ("workpool.consumers.busy", "busy", "{consumer}", "Consumers running an item"),
        ):
            meter.create_observable_gauge(
                name, [self._observe(field)], unit=unit, description=description
            )

    def _observe(self, field: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(getattr(m._snapshot(), field), m._pool_attributes) for m in self.pools()
            ]

        return callback

    def _observe_counts(self, outcome: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(count, m._attributes_of(name))
                for m in self.pools()
                for name, count in list(m._counts[outcome].items())
            ]

        return callback

    def pools(self) -> Iterator[PoolMetrics]:
        with self.lock:
            attached = list(self.attached.values())
        return iter(attached)


_by_provider: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_by_provider_lock = threading.Lock()


def _instruments_for(provider: MeterProvider) -> _Instruments:
    with _by_provider_lock:
        instruments = _by_provider.get(provider)
        if instruments is None:
            instruments = _by_provider[provider] = _Instruments(provider)
        return instruments


@final
class PoolMetrics:
    """Reports a pool's metrics through OpenTelemetry, until `close` (or ``with``).

    Attach it before or after the pool starts; the per-item instruments count the
    items that end while it is attached.

    Args:
        pool: the `WorkerPool` to observe.
        meter_provider: the ``MeterProvider``; default the global one
            (``opentelemetry.metrics.get_meter_provider()``).
        pool_name: the ``workpool.pool.name`` attribute, to tell pools apart.

    Raises:
        TypeError: *pool* is not a `WorkerPool`.
        ValueError: the pool is already instrumented on this provider.
    """

    __slots__ = (
        "__weakref__",
        "_attrs_by_work",
        "_closed",
        "_counts",
        "_instruments",
        "_pool",
        "_pool_attributes",
        "_snapshot_at",
        "_snapshot_value",
        "pool_name",
    )

    def __init__(
        self,
        pool: WorkerPool,
        *,
        meter_provider: MeterProvider | None = None,
        pool_name: str = "default",
    ) -> None:
        if not isinstance(pool, WorkerPool):
            raise TypeError(f"pool must be a WorkerPool, got {pool!r}")
        if not isinstance(pool_name, str) or not pool_name:
            raise ValueError(f"pool_name must be a non-empty string, got {pool_name!r}")
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self._instruments = _instruments_for(provider)
        self._pool = pool
        self.pool_name = pool_name
        self._pool_attributes: dict[str, str] = {POOL_NAME: pool_name}
        self._attrs_by_work: dict[str, dict[str, str]] = {}
        self._counts: dict[str, dict[str, int]] = {
            outcome: {} for outcome in ("succeeded", "failed", "retried", "cancelled", "dropped")
        }
        self._snapshot_at = -1.0
        self._snapshot_value: PoolStats | None = None
        self._closed = False
        with self._instruments.lock:
            if id(pool) in self._instruments.attached:
                raise ValueError(f"{pool!r} is already instrumented on this MeterProvider")
            self._instruments.attached[id(pool)] = self
        pool._add_item_listener(self._item_done)
        add_drop_hook = getattr(pool.worker, "_add_drop_hook", None)
        if add_drop_hook is not None:
            add_drop_hook(self._item_dropped)

    @property
    def pool(self) -> WorkerPool:
        """The instrumented pool."""
        return self._pool

    def close(self) -> None:
        """Stop reporting this pool's metrics. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._instruments.lock:
            self._instruments.attached.pop(id(self._pool), None)
        self._pool._remove_item_listener(self._item_done)
        remove_drop_hook = getattr(self._pool.worker, "_remove_drop_hook", None)
        if remove_drop_hook is not None:
            remove_drop_hook(self._item_dropped)

    def __enter__(self) -> PoolMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PoolMetrics {self.pool_name!r}{' closed' if self._closed else ''}>"

    # -- recording ------------------------------------------------------------------

    def _attributes_of(self, name: str) -> dict[str, str]:
        attributes = self._attrs_by_work.get(name)
        if attributes is None:
            attributes = {POOL_NAME: self.pool_name, WORK_NAME: name}
            if len(self._attrs_by_work) < _MAX_CACHED_NAMES:
                self._attrs_by_work[name] = attributes
        return attributes

    def _count(self, outcome: str, name: str, n: int = 1) -> None:
        counts = self._counts[outcome]
        counts[name] = counts.get(name, 0) + n

    def _item_done(self, item: WorkItem, started: float, finished: float) -> None:
        name = item.name
        state = item.state
        if state is ItemState.SUCCEEDED:
            self._count("succeeded", name)
        elif state is ItemState.FAILED:
            self._count("failed", name)
        elif state is ItemState.CANCELLED:
            self._count("cancelled", name)
        if item.attempts > 1:
            self._count("retried", name, item.attempts - 1)
        instruments = self._instruments
        attributes = self._attributes_of(name)
        instruments.wait.record(max(0.0, started - item.enqueued_at), attributes)
        instruments.run.record(finished - started, attributes)

    def _item_dropped(self, item: WorkItem) -> None:
        self._count("dropped", item.name)

    def _snapshot(self) -> PoolStats:
        # Collections run in the exporter's thread; stats() reads plain counters.
        now = time.monotonic()
        snapshot = self._snapshot_value
        if snapshot is None or now - self._snapshot_at > _SNAPSHOT_TTL:
            snapshot = self._snapshot_value = self._pool.stats()
            self._snapshot_at = now
        return snapshot
