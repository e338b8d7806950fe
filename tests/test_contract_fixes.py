"""Contract fixes of issue 10: on_end for every item's session, ids on the final
failure record, retries logged, bad work refused at enqueue, nothing lost at GC."""

from __future__ import annotations

import gc
import logging
import warnings
from functools import partial
from typing import TYPE_CHECKING, Any
from unittest.mock import AsyncMock

import anyio
import pytest
from tenacity import stop_after_attempt, wait_fixed

from workpool import (
    BackgroundWorker,
    ItemState,
    LogContextFilter,
    RetryPolicy,
    Session,
    SessionManager,
    WorkerPool,
    WorkItem,
    _signature,
    task,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID

    from workpool import Scope, StopToken

pytestmark = pytest.mark.anyio


async def noop(scope: Scope, stopping: StopToken) -> None:
    """Does nothing, and never reads scope.session."""


# -- 1. on_end runs once for every item's session -----------------------------------


async def test_on_end_runs_for_items_that_never_read_their_session() -> None:
    """With an on_end hook, each item gets its own session, ended once after it ran,
    even when the work never reads scope.session."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    with anyio.fail_after(5):
        async with WorkerPool(consumers=2, session_manager=manager) as pool:
            for _ in range(5):
                await pool.enqueue(noop)
    assert len(ended) == 5
    assert len({session.id for session in ended}) == 5
    assert all(session.ended for session in ended)
    assert len(manager) == 0


async def test_on_end_sees_the_session_the_work_used() -> None:
    """The session on_end gets is the one the item's attempts saw, across retries."""
    ended: list[Session] = []
    seen: list[Session] = []
    manager = SessionManager()
    manager.add_on_end(ended.append)  # a hook added after the manager was made

    async def flaky(scope: Scope, stopping: StopToken) -> None:
        seen.append(scope.session)
        if scope.attempt == 1:
            raise ValueError("once")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, session_manager=manager) as pool:
            await pool.enqueue(flaky, retry=RetryPolicy.exponential(2, initial=0))
    assert len(seen) == 2
    assert seen[0] is seen[1]
    assert ended == [seen[0]]


async def test_on_end_runs_for_an_item_whose_parent_had_ended() -> None:
    """An item whose parent session had ended runs in a new session of its own,
    which on_end sees too (the parent's own end was seen once, before)."""
    ended: list[Session] = []
    manager = SessionManager(on_end=ended.append)
    parent = manager.create_session("request")
    pool = WorkerPool(consumers=1, session_manager=manager)
    await pool.enqueue(noop, parent)
    await manager.end_session(parent)
    with anyio.fail_after(5):
        async with pool:
            await pool.join()
    assert len(ended) == 2
    assert ended[0] is parent
    assert ended[1] is not parent


async def test_without_hooks_no_session_is_made_for_work_that_never_reads_it() -> None:
    """Nobody can tell without an on_end hook: no session is made (the fast path)."""
    created: list[Session] = []
    manager = SessionManager()
    original = manager.create_session

    def spy(*args: object, **kwargs: object) -> Session:
        session = original(*args, **kwargs)  # type: ignore[arg-type]
        created.append(session)
        return session

    manager.create_session = spy  # type: ignore[method-assign]
    with anyio.fail_after(5):
        async with WorkerPool(consumers=2, session_manager=manager) as pool:
            for _ in range(5):
                await pool.enqueue(noop)
    assert created == []
    assert pool.stats().succeeded == 5


# -- 2. and 11. the failed attempts' log records carry the item's ids ----------------


class Records(logging.Handler):
    """Keeps workpool's records, through a LogContextFilter as an application would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.addFilter(LogContextFilter())
        self.setFormatter(
            logging.Formatter("%(levelname)s %(work_name)s %(attempt)s %(scope_id)s %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[Records]:
    """workpool's records from WARNING up, seen by a handler with a LogContextFilter."""
    handler = Records()
    handler.setLevel(logging.WARNING)
    log = logging.getLogger("workpool")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def field(record: logging.LogRecord, name: str) -> Any:
    return record.__dict__[name]


async def test_the_final_failure_record_carries_the_last_attempts_ids(records: Records) -> None:
    """The "failed for good" ERROR record has the last attempt's scope_id, session_id,
    work_name and attempt (and the item id), also as a LogContextFilter shows them."""
    scopes: list[Scope] = []

    async def always_fails(scope: Scope, stopping: StopToken) -> None:
        scopes.append(scope)
        raise ValueError(f"attempt {scope.attempt}")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            item = await pool.enqueue(
                always_fails, retry=RetryPolicy.exponential(2, initial=0), name="billing"
            )
    [final] = [r for r in records.records if r.levelno == logging.ERROR]
    assert "failed for good" in final.getMessage()
    assert len(scopes) == 2
    assert field(final, "scope_id") == scopes[-1].id
    assert field(final, "attempt") == 2
    assert field(final, "work_name") == "billing"
    assert field(final, "item_id") == item.id
    session_id = field(final, "session_id")
    assert session_id is not None
    [retry] = [r for r in records.records if r.levelno == logging.WARNING]
    assert field(retry, "session_id") == session_id  # one session for all attempts
    [line] = [line for line in records.lines if line.startswith("ERROR")]
    assert line.startswith(f"ERROR billing 2 {scopes[-1].id} ")


async def test_the_final_failure_record_names_the_session_the_work_used(
    records: Records,
) -> None:
    """A sync item without retries: the record's session is the one the work read."""
    seen: list[tuple[UUID, UUID | None]] = []

    def fails(scope: Scope, stopping: StopToken) -> None:
        seen.append((scope.id, scope.session_id))
        raise RuntimeError("no")

    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            await pool.enqueue(fails)
    [final] = [r for r in records.records if r.levelno == logging.ERROR]
    assert (field(final, "scope_id"), field(final, "session_id")) == seen[0]
    assert field(final, "attempt") == 1


async def test_each_retry_is_logged_once_at_warning(records: Records) -> None:
    """Each retry: one WARNING with the attempt, the delay, the exception and the ids."""
    scopes: list[Scope] = []

    async def flaky(scope: Scope, stopping: StopToken) -> None:
        scopes.append(scope)
        if scope.attempt < 3:
            raise ConnectionError(f"refused #{scope.attempt}")

    policy = RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.01))
    with anyio.fail_after(5):
        async with WorkerPool(consumers=1) as pool:
            item = await pool.enqueue(flaky, retry=policy)
    assert item.state is ItemState.SUCCEEDED
    assert [r.levelno for r in records.records] == [logging.WARNING] * 2
    for number, record in enumerate(records.records, start=1):
        message = record.getMessage()
        assert f"attempt {number} failed" in message
        assert f"ConnectionError: refused #{number}" in message
        assert f"attempt {number + 1} in 0.01 s" in message
        assert field(record, "attempt") == number
        assert field(record, "scope_id") == scopes[number - 1].id
        assert field(record, "item_id") == item.id
        assert field(record, "work_name") == item.name
    assert pool.stats().retried == 2


# -- 3. work that cannot be called as (scope, stopping) is refused at enqueue --------


async def no_arguments() -> None:
    """An async function that takes nothing."""


def three(order_id: int, scope: Scope, stopping: StopToken) -> None:
    """Takes an order id before (scope, stopping)."""


def keyword_only(scope: Scope, stopping: StopToken, *, order_id: int) -> None:
    """Needs a keyword-only argument."""


class Handler:
    def handle(self, scope: Scope, stopping: StopToken) -> None:
        """A method taking (scope, stopping)."""

    def handle_nothing(self) -> None:
        """A method taking nothing."""

    async def __call__(self, scope: Scope, stopping: StopToken) -> None:
        """Instances are async work."""


class TakesOne:
    def __call__(self, scope: Scope) -> None:
        """Instances take one argument only."""


BAD: list[tuple[Any, str]] = [
    (lambda: None, "<lambda>"),
    (lambda x: x, "<lambda>"),
    (no_arguments, "no_arguments"),
    (partial(three, 1, 2), "functools.partial(three"),  # type: ignore[arg-type]
    (partial(three, order_id=1), "functools.partial(three"),
    (keyword_only, "keyword_only"),
    (Handler().handle_nothing, "Handler.handle_nothing"),
    (Handler.handle, "Handler.handle"),
    (TakesOne(), "TakesOne"),
]


@pytest.mark.parametrize(("work", "name"), BAD)
async def test_work_that_cannot_take_scope_and_stopping_is_refused_at_enqueue(
    work: Any, name: str
) -> None:
    """enqueue raises TypeError naming the function; nothing is queued."""
    pool = WorkerPool(consumers=1)
    with pytest.raises(TypeError, match=r"work\(scope, stopping\)") as raised:
        await pool.enqueue(work)
    assert name in str(raised.value)
    with pytest.raises(TypeError, match="cannot be"):
        pool.enqueue_nowait(work, retry=RetryPolicy.exponential(2))
    with pytest.raises(TypeError, match="cannot be"):
        await BackgroundWorker().enqueue(work)
    assert pool.stats().enqueued == 0


async def test_refused_work_is_not_retried_or_run() -> None:
    """A refused function never reaches a consumer: no attempt, no dead letter."""
    dead: list[WorkItem] = []
    refused: Any = no_arguments
    with anyio.fail_after(5):
        async with WorkerPool(consumers=1, on_dead_letter=lambda i, e: dead.append(i)) as pool:
            with pytest.raises(TypeError):
                await pool.enqueue(refused, retry=RetryPolicy.exponential(3, initial=0))
            await pool.enqueue(noop)
    stats = pool.stats()
    assert (stats.enqueued, stats.succeeded, stats.failed, stats.retried) == (1, 1, 0, 0)
    assert dead == []


def _variadic(*args: Any) -> None:
    """Takes anything."""


def _with_default(scope: Scope, stopping: StopToken, extra: int = 1) -> None:
    """A third argument with a default."""


GOOD: list[Any] = [
    lambda scope, stopping: None,
    noop,
    _variadic,
    _with_default,
    partial(three, 1),
    partial(keyword_only, order_id=1),
    Handler().handle,
    Handler(),
    print,  # a builtin: run as it is
    AsyncMock(),
]


@pytest.mark.parametrize("work", GOOD)
async def test_work_that_takes_scope_and_stopping_is_accepted(work: Any) -> None:
    """Functions, closures, methods, partials, callable objects and builtins that take
    (scope, stopping) are queued."""
    item = await BackgroundWorker().enqueue(work)
    assert item.state is ItemState.QUEUED


async def test_a_task_call_is_always_accepted() -> None:
    """A TaskCall (any object declaring __workpool_async__) is not inspected."""

    @task(name="contract.send")
    async def send(scope: Scope, stopping: StopToken, order_id: int) -> None:
        """A named task."""

    item = await BackgroundWorker().enqueue(send.bind(1))
    assert item.is_async is True


async def test_the_check_runs_once_per_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closures made per request share their code: the check runs for the first only;
    a callable object's class is checked once for all its instances."""
    for cache in (_signature.KNOWN_CODES, _signature._known_methods, _signature._known_others):
        cache.clear()  # a cache: it refills
    checks: list[object] = []
    check_code, check_signature = _signature._check_code, _signature._check_signature

    def counted_code(work: Any, func: Any, bound: int) -> None:
        checks.append(work)
        check_code(work, func, bound)

    def counted_signature(work: Any) -> None:
        checks.append(work)
        check_signature(work)

    monkeypatch.setattr(_signature, "_check_code", counted_code)
    monkeypatch.setattr(_signature, "_check_signature", counted_signature)

    class Job:
        async def __call__(self, scope: Scope, stopping: StopToken) -> None:
            """A callable object."""

    def request(order: int) -> Any:
        async def work(scope: Scope, stopping: StopToken) -> None:
            """A closure per request."""

        return work

    worker = BackgroundWorker(capacity=100)
    for order in range(10):
        await worker.enqueue(request(order))
        await worker.enqueue(Job())
    assert len(checks) == 2
    assert worker.qsize() == 20


# -- 4. a pool collected without ever starting says what it drops --------------------


async def test_an_unstarted_pool_collected_with_items_warns(
    workpool_logs: pytest.LogCaptureFixture,
) -> None:
    """ResourceWarning and an ERROR record with how many items never ran."""
    pool = WorkerPool(consumers=1)
    for _ in range(3):
        await pool.enqueue(noop)
    with pytest.warns(ResourceWarning, match="3 queued items never ran"):
        del pool  # collected at once: nothing else refers to an unstarted pool
    [record] = [r for r in workpool_logs.records if r.levelno == logging.ERROR]
    assert "without ever starting: 3 queued items never ran" in record.getMessage()
    assert field(record, "never_ran") == 3


@pytest.mark.parametrize("how", ["empty", "shut down", "ran"])
async def test_no_warning_for_an_empty_or_properly_shut_down_pool(
    how: str, workpool_logs: pytest.LogCaptureFixture
) -> None:
    """A pool with nothing queued, shut down unstarted, or run, goes quietly."""
    pool = WorkerPool(consumers=1)
    if how != "empty":
        await pool.enqueue(noop)
    if how == "shut down":
        report = await pool.shutdown()
        assert len(report.abandoned) == 1
    elif how == "ran":
        with anyio.fail_after(5):
            async with pool:
                pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del pool
        gc.collect()
    assert not [r for r in workpool_logs.records if "never ran" in r.getMessage()]
