"""OpenTelemetry metrics of a pool.

Install with ``pip install 'workpool[otel]'`` (``opentelemetry-api`` only: the SDK
and exporters are the application's choice)::

    from workpool.integrations.otel import PoolMetrics

    pool = WorkerPool.from_settings()
    metrics = PoolMetrics(pool, pool_name="orders")   # uses the global MeterProvider

Names follow the OpenTelemetry messaging semantic conventions where they fit
(``messaging.*``) and use one ``workpool.`` namespace where they do not. Every
point carries ``messaging.system`` (``"workpool"``) and
``messaging.destination.name`` (the pool name). Counters are the pool's lifetime
totals from ``pool.stats()``, reported from the start (zeros included); the
histograms break items down by ``workpool.work.name`` and ``workpool.outcome``.
docs/integrations.md has the table of instruments.

With nothing instrumented, the pool does no extra work at all.
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

from .. import WorkerPool, WorkItem

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from opentelemetry.metrics import MeterProvider

    from .. import PoolStats

__all__ = ["PoolMetrics"]

METER_NAME: Final = "workpool"
SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
OPERATION: Final = "messaging.operation.name"
WORK_NAME: Final = "workpool.work.name"
OUTCOME: Final = "workpool.outcome"
ERROR_TYPE: Final = "error.type"

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

# (instrument, unit, description, [(stats field, extra attributes), ...]): the
# counters, each a sum of pool.stats() fields split by attributes.
_COUNTERS: Final[tuple[tuple[str, str, str, tuple[tuple[str, dict[str, str]], ...]], ...]] = (
    (
        "messaging.client.sent.messages",
        "{message}",
        "Items offered to enqueue*: accepted, or refused with QueueFullError "
        "(error.type queue_full)",
        (
            ("enqueued", {OPERATION: "send"}),
            ("rejected", {OPERATION: "send", ERROR_TYPE: "queue_full"}),
        ),
    ),
    (
        "messaging.client.consumed.messages",
        "{message}",
        "Items a consumer took and finished, by outcome",
        tuple(
            (outcome, {OPERATION: "process", OUTCOME: outcome, **error})
            for outcome, error in (
                ("succeeded", {}),
                ("failed", {ERROR_TYPE: "failed"}),
                ("cancelled", {ERROR_TYPE: "cancelled"}),
            )
        ),
    ),
    ("workpool.item.retries", "{attempt}", "Attempts beyond the first", (("retried", {}),)),
    (
        "workpool.item.timeouts",
        "{attempt}",
        "Attempts cut off by their timeout",
        (("timed_out", {}),),
    ),
    (
        "workpool.item.dropped",
        "{item}",
        "Accepted items a full channel dropped",
        (("dropped", {}),),
    ),
    (
        "workpool.item.abandoned",
        "{item}",
        "Queued items taken out unstarted at the shutdown deadline",
        (("abandoned", {}),),
    ),
)

_GAUGES: Final = (
    ("workpool.queue.depth", "queued", "{item}", "Items waiting in the channel"),
    ("workpool.queue.capacity", "capacity", "{item}", "How many items the channel holds"),
    ("workpool.consumer.busy", "busy", "{consumer}", "Consumers running an item"),
    ("workpool.consumer.count", "consumers", "{consumer}", "Consumers of the pool"),
)


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
        # Counters read pool.stats() when metrics are collected: an SDK counter.add
        # costs several microseconds, more than running a no-op item, and the stats
        # exist from the start, so every counter is reported at zero until it moves.
        for name, unit, description, parts in _COUNTERS:
            meter.create_observable_counter(
                name, [self._observe_sum(parts)], unit=unit, description=description
            )
        for name, field, unit, description in _GAUGES:
            meter.create_observable_gauge(
                name, [self._observe_sum(((field, {}),))], unit=unit, description=description
            )
        self.process = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Time from the start of an item's first attempt to the end of its last",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.wait = meter.create_histogram(
            "workpool.item.wait.duration",
            unit="s",
            description="Time an item waited in the channel, until it started or was dropped",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def _observe_sum(self, parts: tuple[tuple[str, dict[str, str]], ...]) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for m in self.pools():
                snapshot = m._snapshot()
                for field, extra in parts:
                    attributes = {**m._pool_attributes, **extra}
                    observations.append(Observation(getattr(snapshot, field), attributes))
            return observations

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

    Attach it before or after the pool starts: the counters and gauges report the
    pool's own totals (from ``pool.stats()``), the histograms the items that end
    while it is attached.

    Args:
        pool: the `WorkerPool` to observe.
        meter_provider: the ``MeterProvider``; default the global one
            (``opentelemetry.metrics.get_meter_provider()``).
        pool_name: the ``messaging.destination.name`` attribute, to tell pools apart.

    Raises:
        TypeError: *pool* is not a `WorkerPool`.
        ValueError: the pool is already instrumented on this provider.
    """

    __slots__ = (
        "__weakref__",
        "_attrs_by_work",
        "_closed",
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
        self._pool_attributes: dict[str, str] = {SYSTEM: "workpool", DESTINATION: pool_name}
        self._attrs_by_work: dict[tuple[str, str], dict[str, str]] = {}
        self._snapshot_at = -1.0
        self._snapshot_value: PoolStats | None = None
        self._closed = False
        with self._instruments.lock:
            if id(pool) in self._instruments.attached:
                raise ValueError(f"{pool!r} is already instrumented on this MeterProvider")
            self._instruments.attached[id(pool)] = self
        pool.add_item_listener(self._item_done)
        pool.channel.add_drop_hook(self._item_dropped)

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
        self._pool.remove_item_listener(self._item_done)
        self._pool.channel.remove_drop_hook(self._item_dropped)

    def __enter__(self) -> PoolMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PoolMetrics {self.pool_name!r}{' closed' if self._closed else ''}>"

    # -- recording ------------------------------------------------------------------

    def _attributes_of(self, name: str, outcome: str) -> dict[str, str]:
        attributes = self._attrs_by_work.get((name, outcome))
        if attributes is None:
            attributes = {
                **self._pool_attributes,
                OPERATION: "process",
                WORK_NAME: name,
                OUTCOME: outcome,
            }
            if outcome != "succeeded":
                attributes[ERROR_TYPE] = outcome
            if len(self._attrs_by_work) < _MAX_CACHED_NAMES:
                self._attrs_by_work[name, outcome] = attributes
        return attributes

    def _item_done(self, item: WorkItem, started: float, finished: float) -> None:
        # item.state.value is the outcome: "succeeded", "failed" or "cancelled".
        attributes = self._attributes_of(item.name, item.state.value)
        instruments = self._instruments
        instruments.wait.record(max(0.0, started - item.enqueued_at), attributes)
        instruments.process.record(finished - started, attributes)

    def _item_dropped(self, item: WorkItem) -> None:
        waited = max(0.0, time.monotonic() - item.enqueued_at)
        self._instruments.wait.record(waited, self._attributes_of(item.name, "dropped"))

    def _snapshot(self) -> PoolStats:
        # Collections run in the exporter's thread; stats() reads plain counters.
        now = time.monotonic()
        snapshot = self._snapshot_value
        if snapshot is None or now - self._snapshot_at > _SNAPSHOT_TTL:
            snapshot = self._snapshot_value = self._pool.stats()
            self._snapshot_at = now
        return snapshot
