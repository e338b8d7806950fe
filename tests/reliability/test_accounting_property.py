"""Every accepted item is accounted for, whatever the mix (scenario 3, a property test)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tenacity import stop_after_attempt

from workpool import (
    FullMode,
    ItemState,
    QueueFullError,
    RetryPolicy,
    Scope,
    StopToken,
    WorkerPool,
    WorkItem,
)

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

# What an item does: (behaviour, attempts its retry policy allows; 1 = no policy)
BEHAVIOURS = ["ok", "sync_ok", "raise", "flaky", "time_out", "past_deadline"]
items_strategy = st.lists(
    st.tuples(st.sampled_from(BEHAVIOURS), st.integers(min_value=1, max_value=3)),
    max_size=40,
)


@settings.get_profile("reliability")
@given(
    plan=items_strategy,
    consumers=st.integers(min_value=1, max_value=16),
    capacity=st.integers(min_value=1, max_value=20),
    full_mode=st.sampled_from(list(FullMode)),
    nowait=st.booleans(),
    deadline=st.sampled_from([0.0, 0.01, 0.05]),
)
async def test_every_accepted_item_is_accounted_for(
    plan: list[tuple[str, int]],
    consumers: int,
    capacity: int,
    full_mode: FullMode,
    nowait: bool,
    deadline: float,
) -> None:
    """Random mixes of succeed / raise / time out / run past the deadline, 1-16 consumers,
    every full mode: the accounting invariant holds, each outcome reaches its hook once, and
    no item runs more often than its retry policy allows."""
    runs: Counter[int] = Counter()
    dropped: list[WorkItem] = []
    dead: list[WorkItem] = []
    unfinished: list[list[WorkItem]] = []

    def make_work(index: int, behaviour: str) -> Callable[[Scope, StopToken], Any]:
        if behaviour == "sync_ok":

            def sync_work(scope: Scope, stopping: StopToken) -> None:
                runs[index] += 1

            return sync_work

        async def work(scope: Scope, stopping: StopToken) -> None:
            runs[index] += 1
            if behaviour == "ok":
                await anyio.sleep(0)
            elif behaviour == "raise" or (behaviour == "flaky" and scope.attempt == 1):
                raise ValueError(f"item {index} failed")
            elif behaviour in ("time_out", "past_deadline"):
                await anyio.sleep(60)

        return work

    pool = WorkerPool(
        consumers=consumers,
        capacity=capacity,
        full_mode=full_mode,
        enqueue_timeout=0.01,
        shutdown_deadline=deadline,
        cleanup_grace=0.1,
        on_drop=dropped.append,
        on_dead_letter=lambda item, exc: dead.append(item),
        on_abandoned=unfinished.append,
    )
    accepted: dict[int, WorkItem] = {}
    policies: dict[int, int] = {}
    rejected = 0
    with anyio.fail_after(10):
        async with pool:
            for index, (behaviour, attempts) in enumerate(plan):
                options: dict[str, Any] = {"name": f"{behaviour} {index}"}
                if attempts > 1:
                    options["retry"] = RetryPolicy(stop=stop_after_attempt(attempts))
                if behaviour == "time_out":
                    options["timeout"] = 0.005
                try:
                    work = make_work(index, behaviour)
                    if nowait:
                        item = pool.enqueue_nowait(work, **options)
                    else:
                        item = await pool.enqueue(work, **options)
                except QueueFullError:
                    rejected += 1
                    continue
                accepted[index] = item
                policies[index] = attempts
            if nowait:
                await anyio.sleep(0)  # let async work of sync drops settle

    stats = pool.stats()
    report = pool.report
    assert report is not None
    states = Counter(item.state for item in accepted.values())
    # the invariant, and every accepted item in a final state
    assert stats.enqueued == len(accepted)
    assert stats.enqueued == (
        stats.succeeded + stats.failed + stats.dropped + stats.cancelled + stats.abandoned
    )
    assert states[ItemState.QUEUED] == states[ItemState.RUNNING] == 0
    assert states[ItemState.SUCCEEDED] == stats.succeeded == report.succeeded
    assert states[ItemState.FAILED] == stats.failed == report.failed
    assert states[ItemState.DROPPED] == stats.dropped
    assert stats.rejected == rejected
    # each outcome reported once, to the right hook
    by_state = {
        state: {index for index, item in accepted.items() if item.state is state}
        for state in ItemState
    }
    assert {id(item) for item in dropped} == {id(accepted[i]) for i in by_state[ItemState.DROPPED]}
    assert len(dropped) == len(by_state[ItemState.DROPPED])
    assert sorted(id(item) for item in dead) == sorted(
        id(accepted[i]) for i in by_state[ItemState.FAILED]
    )
    assert {id(item) for item in report.cancelled} == {
        id(accepted[i]) for i in by_state[ItemState.CANCELLED]
    }
    assert {id(item) for item in report.abandoned} == {
        id(accepted[i]) for i in by_state[ItemState.ABANDONED]
    }
    if report.cancelled or report.abandoned:
        assert len(unfinished) == 1
        assert len(unfinished[0]) == len(report.cancelled) + len(report.abandoned)
    else:
        assert unfinished == []
    # nothing runs twice unless its retry policy said so
    for index, item in accepted.items():
        assert item.attempts <= policies[index]
        if item.state is ItemState.CANCELLED:
            # cancelled as its attempt started: a sync one may never have reached its thread
            assert item.attempts - 1 <= runs[index] <= item.attempts
        else:
            assert runs[index] == item.attempts
        if item.state in (ItemState.DROPPED, ItemState.ABANDONED):
            assert runs[index] == 0
        if item.state is ItemState.SUCCEEDED:
            behaviour = plan[index][0]
            assert runs[index] == (2 if behaviour == "flaky" else 1)
        if item.state is ItemState.FAILED and plan[index][0] == "raise":
            assert runs[index] == policies[index]
