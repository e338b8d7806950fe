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

COUNTERS = (
    "messaging.client.sent.messages",
    "messaging.client.consumed.messages",
    "workpool.item.retries",
    "workpool.item.timeouts",
    "workpool.item.dropped",
    "workpool.item.abandoned",
)
GAUGES = (
    "workpool.queue.depth",
    "workpool.queue.capacity",
    "workpool.consumer.busy",
    "workpool.consumer.count",
)
HISTOGRAMS = ("messaging.process.duration", "workpool.item.wait.duration")


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


def key(pool: str = "default", **extra: str) -> tuple[tuple[str, Any], ...]:
    """The attributes of a point: the pool's, plus *extra* (dots spelled as ``__``)."""
    attributes = {"messaging.system": "workpool", "messaging.destination.name": pool}
    attributes.update({name.replace("__", "."): value for name, value in extra.items()})
    return tuple(sorted(attributes.items()))


def item_key(work: str, outcome: str, pool: str = "default") -> tuple[tuple[str, Any], ...]:
    """The attributes of a per-item histogram point."""
    extra = {
        "messaging__operation__name": "process",
        "workpool__work__name": work,
        "workpool__outcome": outcome,
    }
    if outcome != "succeeded":
        extra["error__type"] = outcome
    return key(pool, **extra)


def consumed(outcome: str, pool: str = "default") -> tuple[tuple[str, Any], ...]:
    extra = {"messaging__operation__name": "process", "workpool__outcome": outcome}
    if outcome != "succeeded":
        extra["error__type"] = outcome
    return key(pool, **extra)


SENT = key(messaging__operation__name="send")
REJECTED = key(messaging__operation__name="send", error__type="queue_full")


async def ok(scope: Scope, stopping: StopToken) -> None:
    pass


async def bad(scope: Scope, stopping: StopToken) -> None:
    raise ValueError("always")


def test_every_counter_and_gauge_is_reported_at_zero_from_the_start(sdk: Sdk) -> None:
    """Before any item, each counter exists at 0 (so the first increase is never lost)."""
    provider, reader = sdk
    with PoolMetrics(WorkerPool(consumers=3, capacity=5), meter_provider=provider):
        got = collect(reader)
    for name in COUNTERS + GAUGES:
        assert name in got, name
    assert got["messaging.client.sent.messages"][SENT].value == 0
    assert got["messaging.client.sent.messages"][REJECTED].value == 0
    for outcome in ("succeeded", "failed", "cancelled"):
        assert got["messaging.client.consumed.messages"][consumed(outcome)].value == 0
    for name in COUNTERS[2:]:
        assert [point.value for point in got[name].values()] == [0], name
    assert got["workpool.consumer.count"][key()].value == 3
    assert got["workpool.queue.capacity"][key()].value == 5


@pytest.mark.anyio
async def test_instrument_names_are_semantic_conventions_or_one_namespace(sdk: Sdk) -> None:
    """Every instrument is a messaging.* semantic convention or under ``workpool.``."""
    provider, reader = sdk
    pool = WorkerPool()
    with PoolMetrics(pool, meter_provider=provider):
        async with pool:
            await pool.enqueue(ok)  # so that the histograms have points
        got = collect(reader)
    assert set(got) == set(COUNTERS + GAUGES + HISTOGRAMS)
    for name in got:
        prefix = name.split(".")[0]
        assert prefix in {"messaging", "workpool"}, name
        if prefix == "workpool":
            assert name.split(".")[1] in {"item", "queue", "consumer"}, name


@pytest.mark.anyio
async def test_item_outcomes_and_timings_are_counted(sdk: Sdk) -> None:
    """Consumed counts by outcome, retries, and both histograms by work name and outcome."""
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

    count = got["messaging.client.consumed.messages"]
    assert count[consumed("succeeded", "orders")].value == 4
    assert count[consumed("failed", "orders")].value == 1
    assert count[consumed("cancelled", "orders")].value == 0
    assert got["workpool.item.retries"][key("orders")].value == 3
    assert (
        got["messaging.client.sent.messages"][
            key("orders", **{"messaging__operation__name": "send"})
        ].value
        == 5
    )
    process = got["messaging.process.duration"]
    wait = got["workpool.item.wait.duration"]
    assert process[item_key("ok", "succeeded", "orders")].count == 3
    assert process[item_key("flaky", "succeeded", "orders")].count == 1
    assert process[item_key("bad", "failed", "orders")].count == 1
    assert item_key("ok", "failed", "orders") not in process
    assert wait[item_key("ok", "succeeded", "orders")].count == 3
    assert wait[item_key("ok", "succeeded", "orders")].min >= 0
    assert got["workpool.queue.depth"][key("orders")].value == 0


@pytest.mark.anyio
async def test_duration_histograms_have_buckets_for_background_work(sdk: Sdk) -> None:
    """The SDK takes the bucket advice: 10 ms items do not share a bucket with 1 s ones."""
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
    for name in HISTOGRAMS:
        for point in got[name].values():
            assert isinstance(point, HistogramDataPoint)
            assert tuple(point.explicit_bounds) == DURATION_BUCKETS, name
    process = got["messaging.process.duration"]
    quick = process[item_key("quick", "succeeded")]
    slow = process[item_key("slow", "succeeded")]
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
    assert got["workpool.consumer.busy"][key()].value == 2
    assert got["workpool.consumer.count"][key()].value == 2
    assert got["workpool.queue.depth"][key()].value == 3
    assert got["workpool.queue.capacity"][key()].value == 10
    assert got["messaging.client.sent.messages"][SENT].value == 5


@pytest.mark.anyio
async def test_dropped_and_rejected_items_are_counted(sdk: Sdk) -> None:
    """A dropped item counts, and its wait is recorded under its work name as dropped."""
    provider, reader = sdk
    pool = WorkerPool(consumers=1, capacity=1, full_mode=FullMode.DROP_WRITE)
    with PoolMetrics(pool, meter_provider=provider):
        await pool.enqueue(ok, name="kept")  # not started: the channel is now full
        dropped = await pool.enqueue(ok, name="late")
        async with pool:
            pass
        got = collect(reader)
    assert dropped.state.name == "DROPPED"
    assert got["workpool.item.dropped"][key()].value == 1
    assert got["workpool.item.wait.duration"][item_key("late", "dropped")].count == 1
    assert got["messaging.process.duration"][item_key("kept", "succeeded")].count == 1

    rejecting = WorkerPool(consumers=1, capacity=1, full_mode=FullMode.REJECT)
    with PoolMetrics(rejecting, meter_provider=provider, pool_name="r"):
        await rejecting.enqueue(ok)
        with pytest.raises(Exception, match="full"):
            await rejecting.enqueue(ok)
        got = collect(reader)
        async with rejecting:
            pass
    sent = got["messaging.client.sent.messages"]
    assert sent[key("r", messaging__operation__name="send")].value == 1
    assert sent[key("r", messaging__operation__name="send", error__type="queue_full")].value == 1


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
    assert got["messaging.client.consumed.messages"][consumed("cancelled")].value == 1
    assert got["messaging.process.duration"][item_key("stuck", "cancelled")].count == 1
    assert got["workpool.item.abandoned"][key()].value == 1


@pytest.mark.anyio
async def test_two_pools_on_one_provider_are_reported_apart(sdk: Sdk) -> None:
    """Each pool's gauges and counters carry its own destination name."""
    provider, reader = sdk
    first, second = WorkerPool(capacity=7), WorkerPool(capacity=9)
    with (
        PoolMetrics(first, meter_provider=provider, pool_name="a"),
        PoolMetrics(second, meter_provider=provider, pool_name="b"),
    ):
        got = collect(reader)
    capacity = got["workpool.queue.capacity"]
    assert capacity[key("a")].value == 7
    assert capacity[key("b")].value == 9


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
    assert consumed("succeeded") not in got.get("messaging.client.consumed.messages", {})
    assert "messaging.process.duration" not in got


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
