"""workpool.integrations.otel: pool metrics read back with the SDK's in-memory reader."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from workpool import FullMode, RetryPolicy, WorkerPool
from workpool.integrations.otel import DURATION_BUCKETS, PoolMetrics

if TYPE_CHECKING:
    from collections.abc import Iterator

    from workpool import Scope, StopToken

Points = dict[tuple[tuple[str, Any], ...], Any]


Sdk = tuple[MeterProvider, InMemoryMetricReader]


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """An SDK meter provider, and a reader that collects its metrics on demand."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> dict[str, Points]:
    """Metric name -> {sorted attributes: point} for everything the reader holds now."""
    out: dict[str, Points] = {}
    data = reader.get_metrics_data()
    if data is None:  # nothing recorded or observed
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = out.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    points[tuple(sorted((point.attributes or {}).items()))] = point
    return out


def key(work: str | None = None, pool: str = "default") -> tuple[tuple[str, Any], ...]:
    attributes = {"workpool.pool.name": pool}
    if work is not None:
        attributes["workpool.work.name"] = work
    return tuple(sorted(attributes.items()))


async def ok(scope: Scope, stopping: StopToken) -> None:
    pass


async def bad(scope: Scope, stopping: StopToken) -> None:
    raise ValueError("always")


@pytest.mark.anyio
async def test_item_outcomes_and_timings_are_counted_by_work_name(sdk: Sdk) -> None:
    """Succeeded, failed, retried and both histograms carry the work name."""
    provider, reader = sdk
    flaky_calls = 0

    async def flaky(scope: Scope, stopping: StopToken) -> None:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls == 1:
            raise ConnectionError("once")

    pool = WorkerPool(consumers=2, default_retry=RetryPolicy())
    with PoolMetrics(pool, meter_provider=provider, pool_name="orders"):
        async with pool:
            for _ in range(3):
                await pool.enqueue(ok, name="ok")
            await pool.enqueue(bad, name="bad")  # 3 attempts, then fails for good
            await pool.enqueue(flaky, name="flaky")  # 2 attempts
            with anyio.fail_after(10):
                await pool.join()
        got = collect(reader)

    def value(metric: str, work: str) -> Any:
        return got[metric][key(work, "orders")].value

    assert value("workpool.items.succeeded", "ok") == 3
    assert value("workpool.items.succeeded", "flaky") == 1
    assert value("workpool.items.failed", "bad") == 1
    assert value("workpool.items.retried", "bad") == 2
    assert value("workpool.items.retried", "flaky") == 1
    assert key("ok", "orders") not in got["workpool.items.failed"]
    wait = got["workpool.item.wait.duration"][key("ok", "orders")]
    run = got["workpool.item.run.duration"][key("bad", "orders")]
    assert (wait.count, run.count) == (3, 1)
    assert wait.min >= 0
    assert got["workpool.items.enqueued"][key(pool="orders")].value == 5
    assert got["workpool.queue.depth"][key(pool="orders")].value == 0


@pytest.mark.anyio
async def test_duration_histograms_have_buckets_for_background_work(sdk: Sdk) -> None:
    """The SDK takes the bucket advice: 10 ms items do not share a bucket with 0.3 s ones."""
    provider, reader = sdk
    seconds = {"quick": 0.01, "slow": 0.3}

    async def sleeper(scope: Scope, stopping: StopToken) -> None:
        assert scope.item is not None
        await anyio.sleep(seconds[scope.item.name])

    pool = WorkerPool(consumers=2)
    with PoolMetrics(pool, meter_provider=provider), anyio.fail_after(10):
        async with pool:
            await pool.enqueue(sleeper, name="quick")
            await pool.enqueue(sleeper, name="slow")
        got = collect(reader)
    for name in ("workpool.item.wait.duration", "workpool.item.run.duration"):
        for point in got[name].values():
            assert isinstance(point, HistogramDataPoint)
            assert tuple(point.explicit_bounds) == DURATION_BUCKETS, name
    run = got["workpool.item.run.duration"]
    quick, slow = run[key("quick")], run[key("slow")]
    assert quick.bucket_counts.index(1) < slow.bucket_counts.index(1)
    assert DURATION_BUCKETS[0] <= 0.001
    assert DURATION_BUCKETS[-1] >= 600  # ten minutes and more
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


@pytest.mark.anyio
async def test_gauges_show_queue_depth_and_busy_consumers(sdk: Sdk) -> None:
    """While two consumers are busy and three items wait, the gauges say so."""
    provider, reader = sdk
    gate = anyio.Event()

    async def blocked(scope: Scope, stopping: StopToken) -> None:
        await gate.wait()

    pool = WorkerPool(consumers=2, capacity=10)
    with PoolMetrics(pool, meter_provider=provider), anyio.fail_after(10):
        async with pool:
            for _ in range(5):
                await pool.enqueue(blocked)
            await anyio.wait_all_tasks_blocked()
            got = collect(reader)
            gate.set()
    assert got["workpool.consumers.busy"][key()].value == 2
    assert got["workpool.queue.depth"][key()].value == 3
    assert got["workpool.queue.capacity"][key()].value == 10
    assert got["workpool.items.enqueued"][key()].value == 5


@pytest.mark.anyio
async def test_dropped_items_are_counted_by_work_name(sdk: Sdk) -> None:
    """An item a full channel drops is counted, with its work name."""
    provider, reader = sdk
    pool = WorkerPool(consumers=1, capacity=1, full_mode=FullMode.DROP_WRITE)
    with PoolMetrics(pool, meter_provider=provider):
        await pool.enqueue(ok, name="kept")  # not started: the channel is now full
        dropped = await pool.enqueue(ok, name="late")
        async with pool:
            pass
        got = collect(reader)
    assert dropped.state.name == "DROPPED"
    assert got["workpool.items.dropped"][key("late")].value == 1
    assert got["workpool.items.succeeded"][key("kept")].value == 1


@pytest.mark.anyio
async def test_cancelled_and_abandoned_items_are_counted(sdk: Sdk) -> None:
    """Items cut off at the shutdown deadline show up as cancelled and abandoned."""
    provider, reader = sdk

    async def stuck(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(60)

    pool = WorkerPool(consumers=1, shutdown_deadline=0.05)
    with PoolMetrics(pool, meter_provider=provider), anyio.fail_after(10):
        async with pool:
            await pool.enqueue(stuck, name="stuck")
            await pool.enqueue(stuck, name="stuck")
            await anyio.wait_all_tasks_blocked()
        got = collect(reader)
    assert got["workpool.items.cancelled"][key("stuck")].value == 1
    assert got["workpool.items.abandoned"][key()].value == 1


@pytest.mark.anyio
async def test_two_pools_on_one_provider_are_reported_apart(sdk: Sdk) -> None:
    """Each pool's gauges and counters carry its own pool name."""
    provider, reader = sdk
    first, second = WorkerPool(capacity=7), WorkerPool(capacity=9)
    with (
        PoolMetrics(first, meter_provider=provider, pool_name="a"),
        PoolMetrics(second, meter_provider=provider, pool_name="b"),
    ):
        got = collect(reader)
    capacity = got["workpool.queue.capacity"]
    assert capacity[key(pool="a")].value == 7
    assert capacity[key(pool="b")].value == 9


@pytest.mark.anyio
async def test_close_stops_reporting(sdk: Sdk) -> None:
    """After close(), the pool's items and gauges are no longer reported."""
    provider, reader = sdk
    pool = WorkerPool()
    metrics = PoolMetrics(pool, meter_provider=provider)
    metrics.close()
    metrics.close()  # idempotent
    async with pool:
        await pool.enqueue(ok)
    got = collect(reader)
    assert key() not in got.get("workpool.queue.capacity", {})
    assert "workpool.items.succeeded" not in got


def test_instrumenting_a_pool_twice_on_one_provider_is_an_error(sdk: Sdk) -> None:
    """A second PoolMetrics for the same pool and provider would double-count: ValueError."""
    provider, _ = sdk
    pool = WorkerPool()
    with PoolMetrics(pool, meter_provider=provider), pytest.raises(ValueError, match="already"):
        PoolMetrics(pool, meter_provider=provider)
    with pytest.raises(TypeError):
        PoolMetrics("pool")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_works_with_the_api_alone() -> None:
    """With no SDK configured (the API's no-op provider), instrumenting costs nothing and works."""
    pool = WorkerPool()
    with PoolMetrics(pool):
        async with pool:
            await pool.enqueue(ok)
    assert pool.report is not None
    assert pool.report.succeeded == 1


def test_without_the_extra_import_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry-api, importing the module says which extra to install."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    monkeypatch.delitem(sys.modules, "workpool.integrations.otel")
    with pytest.raises(ImportError, match=r"workpool\[otel\]"):
        importlib.import_module("workpool.integrations.otel")
