"""Retry policies, per-attempt timeouts and dead letters (issue 3)."""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

import workpool._retry
from tests.helpers.accounting import assert_accounted
from tests.helpers.services import Connection, ConnectionTracker
from workpool import (
    DrainReport,
    ItemState,
    LogContextFilter,
    PoolSettings,
    RetryPolicy,
    RetrySettings,
    Scope,
    Session,
    SessionManager,
    StopToken,
    WorkerPool,
    WorkItem,
    current_scope,
    retry_policy,
)

if TYPE_CHECKING:
    from uuid import UUID


class DeadLetters:
    def __init__(self) -> None:
        self.calls: list[tuple[WorkItem, BaseException]] = []

    def __call__(self, item: WorkItem, exc: BaseException) -> None:
        self.calls.append((item, exc))


def attempts(n: int) -> RetryPolicy:
    return RetryPolicy(stop=stop_after_attempt(n))


class Flaky:
    """Work that fails its first *failures* attempts, recording each attempt number."""

    def __init__(self, failures: int, exc: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.exc = exc
        self.attempts: list[int] = []

    async def __call__(self, scope: Scope, stopping: StopToken) -> None:
        self.attempts.append(scope.attempt)
        if len(self.attempts) <= self.failures:
            raise self.exc(f"attempt {scope.attempt}")


async def run_items(pool: WorkerPool, *works: Any, **kwargs: Any) -> list[WorkItem]:
    with anyio.fail_after(10):
        async with pool:
            items = [await pool.enqueue(work, **kwargs) for work in works]
            await pool.join()
    return items


# -- exhaustion and success ----------------------------------------------------------


@pytest.mark.anyio
async def test_exhaustion_dead_letters_once_with_the_last_exception() -> None:
    """A policy of 3 attempts runs exactly 3, then dead-letters the last exception once."""
    dead = DeadLetters()
    work = Flaky(failures=10)
    pool = WorkerPool(on_dead_letter=dead)
    (item,) = await run_items(pool, work, retry=attempts(3))
    assert work.attempts == [1, 2, 3]
    assert item.attempts == 3
    assert item.state is ItemState.FAILED
    ((dead_item, exc),) = dead.calls
    assert dead_item is item
    assert type(exc) is ValueError
    assert str(exc) == "attempt 3"
    stats = pool.stats()
    assert (stats.failed, stats.dead_lettered, stats.retried, stats.succeeded) == (1, 1, 2, 0)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_eventual_success_is_not_dead_lettered() -> None:
    """An item that succeeds on its third attempt succeeds; retried counts two."""
    dead = DeadLetters()
    work = Flaky(failures=2)
    pool = WorkerPool(on_dead_letter=dead)
    (item,) = await run_items(pool, work, retry=attempts(5))
    assert work.attempts == [1, 2, 3]
    assert item.state is ItemState.SUCCEEDED
    assert dead.calls == []
    stats = pool.stats()
    assert (stats.succeeded, stats.failed, stats.retried, stats.dead_lettered) == (1, 0, 2, 0)


@pytest.mark.anyio
async def test_without_a_policy_the_first_failure_is_final() -> None:
    """With no policy anywhere, an item fails (and is dead-lettered) on its first failure."""
    dead = DeadLetters()
    work = Flaky(failures=1)
    pool = WorkerPool(on_dead_letter=dead)
    (item,) = await run_items(pool, work)
    assert work.attempts == [1]
    assert [i for i, _ in dead.calls] == [item]
    assert pool.stats().retried == 0


@pytest.mark.anyio
async def test_sync_work_is_retried_in_fresh_threads_with_its_scope() -> None:
    """Sync work is retried like async work; current_scope() is each attempt's scope."""
    seen: list[tuple[int, bool]] = []

    def work(scope: Scope, stopping: StopToken) -> None:
        seen.append((scope.attempt, current_scope() is scope))
        if scope.attempt < 3:
            raise OSError("flaky disk")

    pool = WorkerPool()
    (item,) = await run_items(pool, work, retry=attempts(3))
    assert seen == [(1, True), (2, True), (3, True)]
    assert item.state is ItemState.SUCCEEDED


@pytest.mark.anyio
async def test_one_shared_policy_serves_concurrent_items() -> None:
    """One policy shared by items failing at once on several consumers gives each its
    own count of attempts."""
    policy = RetryPolicy(stop=stop_after_attempt(3))
    works = [Flaky(failures=10) for _ in range(8)]
    dead = DeadLetters()
    pool = WorkerPool(consumers=4, on_dead_letter=dead)
    await run_items(pool, *works, retry=policy)
    assert all(work.attempts == [1, 2, 3] for work in works)
    assert len(dead.calls) == 8
    assert pool.stats().retried == 16


# -- scopes and sessions across attempts ---------------------------------------------


@pytest.mark.anyio
async def test_each_attempt_gets_a_fresh_scope_in_one_session() -> None:
    """Every attempt has a new scope and scoped services (the previous attempt's
    cleanups already ran) and the same session; scope.attempt is 1-based."""
    tracker = ConnectionTracker()
    created = tracker.created
    registry = tracker.registry()
    seen: list[tuple[UUID, int, UUID | None, Connection, list[bool]]] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        conn = scope.get(Connection)
        earlier = [c.closed for c in created if c is not conn]
        seen.append((scope.id, scope.attempt, scope.session_id, conn, earlier))
        if scope.attempt < 3:
            raise ValueError("again")

    manager = SessionManager()
    pool = WorkerPool(registry=registry, session_manager=manager)
    (item,) = await run_items(pool, work, retry=attempts(3))
    assert item.state is ItemState.SUCCEEDED
    assert [attempt for _, attempt, _, _, _ in seen] == [1, 2, 3]
    assert len({scope_id for scope_id, *_ in seen}) == 3
    assert len({session_id for _, _, session_id, _, _ in seen}) == 1
    assert seen[0][2] is not None
    assert len({id(conn) for *_, conn, _ in seen}) == 3
    assert [earlier for *_, earlier in seen] == [[], [True], [True, True]]
    assert all(conn.closed for conn in created)
    assert len(manager) == 0


@pytest.mark.anyio
async def test_the_parent_session_is_held_across_attempts_and_backoff() -> None:
    """A parent session the request has released stays alive between attempts, and
    ends once, when the item's last attempt is over."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    first_failed = anyio.Event()
    go_on = anyio.Event()
    seen: list[tuple[UUID | None, bool]] = []

    async def before_sleep(state: RetryCallState) -> None:
        first_failed.set()
        await go_on.wait()  # the backoff: the item sits between two attempts

    async def work(scope: Scope, stopping: StopToken) -> None:
        seen.append((scope.session_id, scope.session.ended))
        if scope.attempt == 1:
            raise ValueError("first")

    policy = RetryPolicy(stop=stop_after_attempt(2), before_sleep=before_sleep)
    with anyio.fail_after(5):
        async with WorkerPool(session_manager=manager) as pool:
            session = manager.create_session("request")
            await pool.enqueue(work, session, retry=policy)
            await first_failed.wait()
            await manager.release(session, "request")
            assert not session.ended
            go_on.set()
            await pool.join()
    assert seen == [(session.id, False), (session.id, False)]
    assert ended == [session]


# -- where the policy comes from -----------------------------------------------------


@pytest.mark.anyio
async def test_retry_policy_decorator_is_found_through_partial() -> None:
    """@retry_policy attaches a policy without wrapping; it is found through partial."""
    calls: list[tuple[str, int]] = []

    @retry_policy(stop=stop_after_attempt(4))
    async def send(order: str, scope: Scope, stopping: StopToken) -> None:
        calls.append((order, scope.attempt))
        raise ConnectionError("smtp down")

    pool = WorkerPool()
    (item,) = await run_items(pool, partial(partial(send, "A-1")))
    assert calls == [("A-1", 1), ("A-1", 2), ("A-1", 3), ("A-1", 4)]
    assert item.state is ItemState.FAILED


def test_retry_policy_decorator_returns_the_function_itself() -> None:
    """The decorator returns the very function, with the policy attached."""
    policy = RetryPolicy.exponential(5)

    async def send(scope: Scope, stopping: StopToken) -> None:
        pass

    assert retry_policy(policy)(send) is send
    assert send.__workpool_retry__ is policy  # type: ignore[attr-defined]


def test_retry_policy_decorator_rejects_bad_input() -> None:
    """retry_policy() takes a policy or keywords, not both, and only a RetryPolicy."""
    with pytest.raises(TypeError, match="not both"):
        retry_policy(RetryPolicy(), stop=stop_after_attempt(2))
    with pytest.raises(TypeError, match="RetryPolicy"):
        retry_policy(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="enqueue"):
        retry_policy(RetryPolicy())(len)


async def always_fails(scope: Scope, stopping: StopToken) -> None:
    raise ValueError("no")


@retry_policy(attempts(3))
async def decorated_fails(scope: Scope, stopping: StopToken) -> None:
    raise ValueError("no")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("work", "enqueue_retry", "default_retry", "settings_attempts", "expected"),
    [
        pytest.param(decorated_fails, attempts(2), attempts(4), 5, 2, id="enqueue-wins"),
        pytest.param(decorated_fails, None, attempts(4), 5, 3, id="decorator-over-default"),
        pytest.param(always_fails, None, attempts(4), 5, 4, id="default-over-settings"),
        pytest.param(always_fails, None, None, 5, 5, id="settings"),
        pytest.param(always_fails, None, None, 1, 1, id="settings-1-is-no-retry"),
        pytest.param(decorated_fails, None, None, 1, 3, id="decorator-alone"),
    ],
)
async def test_policy_precedence(
    work: Any,
    enqueue_retry: RetryPolicy | None,
    default_retry: RetryPolicy | None,
    settings_attempts: int,
    expected: int,
) -> None:
    """enqueue(retry=) > @retry_policy > default_retry > PoolSettings.retry > none."""
    settings = PoolSettings(retry=RetrySettings(attempts=settings_attempts, backoff_initial=0))
    overrides: dict[str, Any] = {}
    if default_retry is not None:
        overrides["default_retry"] = default_retry
    pool = WorkerPool.from_settings(settings, **overrides)
    (item,) = await run_items(pool, work, retry=enqueue_retry)
    assert item.attempts == expected
    assert pool.stats().retried == expected - 1


@pytest.mark.anyio
async def test_a_bare_pool_has_no_default_policy() -> None:
    """WorkerPool() without default_retry does not retry."""
    pool = WorkerPool()
    (item,) = await run_items(pool, always_fails)
    assert item.attempts == 1


@pytest.mark.anyio
async def test_the_default_policy_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WORKPOOL_RETRY__ATTEMPTS (through from_settings) sets the pool's default policy."""
    monkeypatch.setenv("WORKPOOL_RETRY__ATTEMPTS", "3")
    monkeypatch.setenv("WORKPOOL_RETRY__BACKOFF_INITIAL", "0")
    pool = WorkerPool.from_settings()
    (item,) = await run_items(pool, always_fails)
    assert item.attempts == 3


@pytest.mark.anyio
async def test_a_predicate_that_skips_other_exceptions() -> None:
    """retry_if_exception_type(ValueError) retries a ValueError, not a KeyError."""
    dead = DeadLetters()
    policy = RetryPolicy(stop=stop_after_attempt(3), retry=retry_if_exception_type(ValueError))
    key_error = Flaky(failures=10, exc=KeyError)
    value_error = Flaky(failures=10, exc=ValueError)
    pool = WorkerPool(consumers=1, on_dead_letter=dead)
    await run_items(pool, key_error, value_error, retry=policy)
    assert key_error.attempts == [1]
    assert value_error.attempts == [1, 2, 3]
    assert [type(exc) for _, exc in dead.calls] == [KeyError, ValueError]


# -- waits ---------------------------------------------------------------------------


def wait_before(policy: RetryPolicy, attempt_number: int) -> float:
    """The wait policy's answer after attempt *attempt_number* failed."""
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt_number
    wait = policy.wait(state)
    assert isinstance(wait, int | float)
    return float(wait)


@pytest.mark.anyio
async def test_exponential_waits_are_the_ones_tenacity_sleeps() -> None:
    """exponential(4, initial=0.01, multiplier=2) waits 0.01, 0.02, 0.04 s between
    attempts, as tenacity reports them to before_sleep."""
    exponential = RetryPolicy.exponential(4, initial=0.01, multiplier=2)
    waits: list[tuple[int, float, float]] = []

    def before_sleep(state: RetryCallState) -> None:
        assert state.next_action is not None
        waits.append((state.attempt_number, state.upcoming_sleep, state.next_action.sleep))

    policy = RetryPolicy(
        stop=exponential.stop,
        wait=exponential.wait,
        retry=exponential.retry,
        before_sleep=before_sleep,
    )
    work = Flaky(failures=10)
    pool = WorkerPool()
    await run_items(pool, work, retry=policy)
    assert work.attempts == [1, 2, 3, 4]
    assert [n for n, _, _ in waits] == [1, 2, 3]
    assert [upcoming for _, upcoming, _ in waits] == pytest.approx([0.01, 0.02, 0.04])
    assert [sleep for _, _, sleep in waits] == pytest.approx([0.01, 0.02, 0.04])


def test_exponential_waits_are_capped_by_maximum() -> None:
    """The wait before retry k is min(maximum, initial * multiplier**(k-1))."""
    policy = RetryPolicy.exponential(10, initial=1, multiplier=3, maximum=20)
    waits = [wait_before(policy, k) for k in range(1, 8)]
    assert waits == pytest.approx([1, 3, 9, 20, 20, 20, 20])


def test_exponential_jitter_adds_up_to_jitter_seconds() -> None:
    """Jitter adds a uniform random [0, jitter] seconds on top of the capped wait."""
    policy = RetryPolicy.exponential(10, initial=1, multiplier=2, maximum=3, jitter=0.5)
    for k, base in [(1, 1.0), (2, 2.0), (3, 3.0), (6, 3.0)]:
        samples = [wait_before(policy, k) for _ in range(200)]
        assert all(base <= s <= base + 0.5 for s in samples)
        assert len(set(samples)) > 1


def test_exponential_defaults() -> None:
    """exponential() defaults: 3 attempts, 0.1 s first wait doubling, retry on Exception."""
    policy = RetryPolicy.exponential()
    assert policy.max_attempts == 3
    assert [wait_before(policy, k) for k in (1, 2)] == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"initial": -0.1}, "initial"),
        ({"maximum": float("inf")}, "maximum"),
        ({"maximum": -1}, "maximum"),
        ({"jitter": -1}, "jitter"),
        ({"jitter": float("nan")}, "jitter"),
        ({"multiplier": 0.5}, "multiplier"),
    ],
)
def test_exponential_rejects_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    """Out-of-range exponential() arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=argument):
        RetryPolicy.exponential(**kwargs)


def test_exponential_rejects_a_retry_on_that_is_not_an_exception_type() -> None:
    """retry_on must be exception types."""
    with pytest.raises(TypeError, match="retry_on"):
        RetryPolicy.exponential(retry_on="ValueError")  # type: ignore[arg-type]


def test_a_policy_rejects_strategies_that_are_not_callable() -> None:
    """RetryPolicy(stop=3) raises TypeError naming stop."""
    with pytest.raises(TypeError, match="stop"):
        RetryPolicy(stop=3)  # type: ignore[arg-type]


def test_a_policy_is_immutable() -> None:
    """A RetryPolicy cannot be changed after it is made."""
    policy = RetryPolicy()
    with pytest.raises(AttributeError, match="immutable"):
        policy.stop = stop_after_attempt(9)
    with pytest.raises(AttributeError, match="immutable"):
        del policy.wait
    assert policy.max_attempts == 3


# -- timeouts ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_per_attempt_timeout_is_retried_and_counted() -> None:
    """enqueue(timeout=) raises TimeoutError in a slow attempt; the policy retries it."""
    tried: list[int] = []

    async def slow_then_fast(scope: Scope, stopping: StopToken) -> None:
        tried.append(scope.attempt)
        if scope.attempt == 1:
            await anyio.sleep_forever()

    pool = WorkerPool()
    (item,) = await run_items(pool, slow_then_fast, retry=attempts(3), timeout=0.02)
    assert tried == [1, 2]
    assert item.state is ItemState.SUCCEEDED
    stats = pool.stats()
    assert (stats.timed_out, stats.retried, stats.succeeded) == (1, 1, 1)


async def forever(scope: Scope, stopping: StopToken) -> None:
    await anyio.sleep_forever()


@pytest.mark.anyio
async def test_the_pool_task_timeout_bounds_every_attempt() -> None:
    """task_timeout applies to items without their own; each timeout counts."""
    dead = DeadLetters()
    pool = WorkerPool(task_timeout=0.02, on_dead_letter=dead)
    (item,) = await run_items(pool, forever, retry=attempts(2))
    assert item.attempts == 2
    ((_, exc),) = dead.calls
    assert isinstance(exc, TimeoutError)
    stats = pool.stats()
    assert (stats.timed_out, stats.failed, stats.dead_lettered) == (2, 1, 1)


@pytest.mark.anyio
async def test_an_items_timeout_overrides_the_pools() -> None:
    """enqueue(timeout=) wins over the pool's task_timeout."""

    async def takes_a_while(scope: Scope, stopping: StopToken) -> None:
        await anyio.sleep(0.1)

    pool = WorkerPool(task_timeout=0.01)
    (item,) = await run_items(pool, takes_a_while, timeout=10)
    assert item.state is ItemState.SUCCEEDED
    assert pool.stats().timed_out == 0


@pytest.mark.anyio
async def test_the_work_functions_own_timeout_is_not_the_pools() -> None:
    """A TimeoutError the work raises itself fails the item but is not counted timed_out."""

    async def own_timeout(scope: Scope, stopping: StopToken) -> None:
        with anyio.fail_after(0.001):
            await anyio.sleep_forever()

    pool = WorkerPool(task_timeout=10)
    (item,) = await run_items(pool, own_timeout)
    assert item.state is ItemState.FAILED
    assert pool.stats().timed_out == 0


# -- cancellation --------------------------------------------------------------------

CATCH_ALL = RetryPolicy(stop=stop_after_attempt(5), retry=retry_if_not_exception_type(ValueError))


@pytest.mark.anyio
async def test_cancellation_is_never_retried_even_by_a_catch_all_predicate() -> None:
    """At the shutdown deadline a running attempt is cancelled, not retried, and the
    item is reported as cancelled."""
    dead = DeadLetters()
    tried: list[int] = []

    async def stuck(scope: Scope, stopping: StopToken) -> None:
        tried.append(scope.attempt)
        await anyio.sleep_forever()

    pool = WorkerPool(on_dead_letter=dead, task_timeout=30)
    with anyio.fail_after(5):
        async with pool:
            item = await pool.enqueue(stuck, retry=CATCH_ALL)
            await anyio.wait_all_tasks_blocked()
            report = await pool.shutdown(deadline=0.05)
    assert tried == [1]
    assert item.state is ItemState.CANCELLED
    assert report.cancelled == (item,)
    assert dead.calls == []
    stats = pool.stats()
    assert (stats.retried, stats.timed_out, stats.failed, stats.cancelled) == (0, 0, 0, 1)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_shutdown_during_a_long_backoff_ends_it_at_once() -> None:
    """An item waiting 60 s before its next attempt is cancelled at the deadline:
    shutdown returns promptly, the item is in report.cancelled, never retried."""
    dead = DeadLetters()
    backing_off = anyio.Event()
    policy = RetryPolicy(
        stop=stop_after_attempt(3),
        wait=wait_fixed(60),
        retry=retry_if_not_exception_type(KeyError),
        before_sleep=lambda state: backing_off.set(),
    )
    work = Flaky(failures=10)
    pool = WorkerPool(on_dead_letter=dead)
    reports: list[DrainReport] = []
    with anyio.fail_after(5):
        async with pool:
            item = await pool.enqueue(work, retry=policy)
            await backing_off.wait()
            reports.append(await pool.shutdown(deadline=0.2))
    (report,) = reports
    assert work.attempts == [1]
    assert item.state is ItemState.CANCELLED
    assert report.cancelled == (item,)
    assert report.deadline_hit
    assert report.elapsed < 5
    assert dead.calls == []
    stats = pool.stats()
    assert (stats.retried, stats.failed, stats.cancelled) == (0, 0, 1)
    assert_accounted(pool)


@pytest.mark.anyio
async def test_a_zero_second_backoff_does_not_start_another_attempt_once_cut_off() -> None:
    """Cut off between two attempts with no wait, the item ends cancelled."""
    entered = anyio.Event()
    tried: list[int] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        tried.append(scope.attempt)
        entered.set()
        await anyio.sleep_forever()

    pool = WorkerPool()
    with anyio.fail_after(5):
        async with pool:
            item = await pool.enqueue(work, retry=CATCH_ALL, timeout=10)
            await entered.wait()
            report = await pool.shutdown(deadline=0)
    assert tried == [1]
    assert report.cancelled == (item,)


# -- dead letters and logs -----------------------------------------------------------


@pytest.mark.anyio
async def test_on_dead_letter_errors_are_logged_and_swallowed(
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """A dead-letter hook that raises is logged; the consumer goes on."""

    def hook(item: WorkItem, exc: BaseException) -> None:
        raise RuntimeError("dead-letter store offline")

    ok = Flaky(failures=0)
    pool = WorkerPool(consumers=1, on_dead_letter=hook)
    items = await run_items(pool, always_fails, ok)
    assert [item.state for item in items] == [ItemState.FAILED, ItemState.SUCCEEDED]
    assert pool.stats().dead_lettered == 1
    assert any("dead-letter store offline" in (r.exc_text or "") for r in workpool_logs.records)


@pytest.mark.anyio
async def test_async_on_dead_letter_is_awaited() -> None:
    """An async dead-letter hook is awaited with the item and its exception."""
    got: list[tuple[WorkItem, str]] = []

    async def hook(item: WorkItem, exc: BaseException) -> None:
        await anyio.lowlevel.checkpoint()
        got.append((item, str(exc)))

    pool = WorkerPool(on_dead_letter=hook)
    (item,) = await run_items(pool, always_fails)
    assert got == [(item, "no")]


@pytest.mark.anyio
async def test_the_final_failure_is_logged_with_its_traceback_and_name(
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """The final failure is logged at ERROR with the item's name and the traceback."""

    async def send_receipt(scope: Scope, stopping: StopToken) -> None:
        raise ValueError(f"mailbox full on attempt {scope.attempt}")

    pool = WorkerPool()
    (item,) = await run_items(pool, send_receipt, retry=attempts(2), name="send-receipt")
    errors = [r for r in workpool_logs.records if r.levelno == logging.ERROR]
    (record,) = errors
    assert "send-receipt" in record.getMessage()
    assert "2 attempts" in record.getMessage()
    assert record.exc_text is not None
    assert "Traceback" in record.exc_text
    assert "ValueError: mailbox full on attempt 2" in record.exc_text
    assert "send_receipt" in record.exc_text
    assert record.work_name == "send-receipt"  # type: ignore[attr-defined]
    assert record.attempt == 2  # type: ignore[attr-defined]
    assert record.item_id == item.id  # type: ignore[attr-defined]
    assert item.state is ItemState.FAILED


# -- the success path ----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_first_attempt_success_never_touches_tenacity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the first attempt succeeds, the retry machinery is never built."""

    def explode(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("RetryRun built for an item that succeeded at once")

    monkeypatch.setattr(workpool._retry.RetryRun, "__init__", explode)
    monkeypatch.setattr(workpool._retry.RetryPolicy, "_retrying", explode)

    @retry_policy(RetryPolicy.exponential(5))
    async def fine(scope: Scope, stopping: StopToken) -> None:
        pass

    def sync_fine(scope: Scope, stopping: StopToken) -> None:
        pass

    pool = WorkerPool(default_retry=attempts(3))
    items = [
        *await run_items(pool, fine, partial(fine), sync_fine),
    ]
    assert [item.state for item in items] == [ItemState.SUCCEEDED] * 3
    assert pool.stats().retried == 0


@pytest.mark.anyio
async def test_a_negative_wait_fails_the_item_not_the_pool() -> None:
    """A wait strategy that returns a negative delay fails that item with a clear error;
    the consumer lives on."""
    dead = DeadLetters()
    policy = RetryPolicy(stop=stop_after_attempt(3), wait=lambda state: -1.0)
    work = Flaky(failures=10)
    ok = Flaky(failures=0)
    pool = WorkerPool(consumers=1, on_dead_letter=dead)
    items = await run_items(pool, work, retry=policy)
    items += await run_items(WorkerPool(), ok)
    assert work.attempts == [1]
    ((item, exc),) = dead.calls
    assert item is items[0]
    assert isinstance(exc, ValueError)
    assert "wait" in str(exc)
    assert "-1.0" in str(exc)
    assert isinstance(exc.__cause__, ValueError)
    assert str(exc.__cause__) == "attempt 1"
    assert_accounted(pool)


@pytest.mark.anyio
async def test_combined_tenacity_strategies_work() -> None:
    """Strategies combine with | as in tenacity: stop after 3 attempts or 60 s."""
    work = Flaky(failures=10)
    policy = RetryPolicy(stop=stop_after_attempt(3) | stop_after_delay(60))
    pool = WorkerPool()
    await run_items(pool, work, retry=policy)
    assert work.attempts == [1, 2, 3]


@pytest.mark.anyio
async def test_stop_after_delay_counts_from_the_first_attempt() -> None:
    """stop_after_delay(0) gives up after the first failure, as tenacity would."""
    work = Flaky(failures=10)
    pool = WorkerPool()
    await run_items(pool, work, retry=RetryPolicy(stop=stop_after_delay(0)))
    assert work.attempts == [1]


@pytest.mark.anyio
async def test_log_records_carry_the_attempt_number() -> None:
    """Records logged during a retry carry that attempt's number and scope id."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(LogContextFilter())
    app = logging.getLogger("tests.retry.app")
    app.addHandler(handler)
    app.setLevel(logging.INFO)
    scopes: list[Scope] = []

    async def work(scope: Scope, stopping: StopToken) -> None:
        scopes.append(scope)
        app.info("trying")
        if scope.attempt < 3:
            raise ValueError("again")

    try:
        await run_items(WorkerPool(), work, retry=attempts(3))
    finally:
        app.removeHandler(handler)
    assert [r.attempt for r in records] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [r.scope_id for r in records] == [s.id for s in scopes]  # type: ignore[attr-defined]
    assert len({r.session_id for r in records}) == 1  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_sync_work_times_out_too() -> None:
    """A per-attempt timeout also bounds sync work (its thread is abandoned)."""
    release = threading.Event()
    tried: list[int] = []

    def slow(scope: Scope, stopping: StopToken) -> None:
        tried.append(scope.attempt)
        if scope.attempt == 1:
            release.wait(5)

    pool = WorkerPool()
    try:
        (item,) = await run_items(pool, slow, retry=attempts(2), timeout=0.05)
    finally:
        release.set()
    assert item.state is ItemState.SUCCEEDED
    assert tried == [1, 2]
    assert pool.stats().timed_out == 1
