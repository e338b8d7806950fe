"""Nothing accepted is lost: worker processes killed, crashing, stopped, or sharing a file.

Each test runs worker processes (``tests/durable/worker.py``) on a real SQLite file,
on the test's backend, with short leases; the test process produces and inspects
through a `SqliteChannel` of its own. Every test ends with the same check: each
accepted id succeeded (its task recorded ``done``) or is in the dead letters, each
worker that drained kept ``delivered == succeeded + failed + released +
rescheduled``, and once the workers have stopped no message is left in the file.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.durable.harness import wait_until
from tests.durable.tasks import block_first, exit_process, noop, slow
from workpool import task

if TYPE_CHECKING:
    from uuid import UUID

    from tests.durable.harness import Harness
    from tests.durable.tasks import Run
    from workpool import Scope, StopToken

pytestmark = pytest.mark.anyio


# Producer-side tasks the workers do not have (or have with another signature).
@task(name="durable.unregistered")
async def unregistered(scope: Scope, stopping: StopToken, n: int) -> None:
    """Not in the workers' registry."""


@task(name="durable.typed")
async def typed_as_text(scope: Scope, stopping: StopToken, n: str) -> None:
    """The workers' ``durable.typed`` takes an int: "twelve" does not validate there."""


async def test_kill_9_mid_item_runs_it_again_after_a_restart(harness: Harness) -> None:
    """A worker killed with SIGKILL while an item runs: the restarted worker runs it
    again once the lease expires, with deliveries 2; the items queued behind it run."""
    first = harness.worker(consumers=1, lease=1.0)
    channel = harness.channel()
    try:
        held = await channel.enqueue(block_first.bind(0))
        behind = [await channel.enqueue(noop.bind(n)) for n in range(1, 6)]
    finally:
        await channel.aclose()
    await first.ready()
    await harness.wait_started(held.id, deliveries=1)
    first.kill9()

    second = harness.worker(consumers=1, lease=1.0)
    await harness.all_settled([held.id, *(item.id for item in behind)])
    runs = harness.starts(held.id)
    assert [(r.deliveries, r.pid) for r in runs] == [(1, first.pid), (2, second.pid)]
    assert not await harness.dead_letters()
    report = await second.stop()
    assert report["exit"] == 0
    # The killed worker may have claimed the items behind ahead (prefetch): those come
    # back after its lease too, with deliveries 2; each runs once.
    behind_runs = [harness.starts(item.id) for item in behind]
    assert [len(r) for r in behind_runs] == [1] * 5
    assert report["stats"]["redelivered"] == 1 + sum(r[0].deliveries == 2 for r in behind_runs)
    assert harness.left_in_store() == 0


async def test_a_task_that_kills_its_process_is_dead_lettered_after_max_deliveries(
    harness: Harness,
) -> None:
    """``os._exit`` in a task, max_deliveries 2, three workers on the file: the first
    two to claim it die running it (each claim after the previous lease expired), the
    third dead-letters it (reason delivery_limit) without running it, and runs the
    rest."""
    channel = harness.channel()
    try:
        fatal = await channel.enqueue(exit_process.bind(0))
        after = await channel.enqueue(noop.bind(1))
    finally:
        await channel.aclose()
    workers = [harness.worker(consumers=1, lease=0.5, max_deliveries=2) for _ in range(3)]
    await harness.all_settled([fatal.id, after.id])
    dead = await harness.dead_letters()
    assert list(dead) == [fatal.id]
    assert dead[fatal.id].reason == "delivery_limit"
    assert dead[fatal.id].name == "durable.exit"
    starts = harness.starts(fatal.id)
    assert [r.deliveries for r in starts] == [1, 2]
    dying = [w for w in workers if w.pid in {r.pid for r in starts}]
    assert len(dying) == 2
    for started in dying:
        assert await started.exited() == 17, started.stderr()
    [survivor] = [w for w in workers if w not in dying]
    assert after.id in harness.done_ids()
    report = await survivor.stop()
    assert report["exit"] == 0
    assert report["stats"]["failed"] == 1  # dead-lettered at claim, unrun
    assert harness.left_in_store() == 0


async def test_unknown_name_bad_payload_and_bad_arguments_are_dead_lettered_at_once(
    harness: Harness,
) -> None:
    """An unregistered name, payloads that do not decode (written into the file by
    hand: not JSON, JSON of the wrong shape) and arguments that do not validate are
    dead-lettered at once (well within the lease), never run, and the one consumer
    keeps running."""
    worker = harness.worker(consumers=1, lease=30.0)
    await worker.ready()
    channel = harness.channel()
    try:
        started = time.monotonic()
        unknown = await channel.enqueue(unregistered.bind(1))
        garbled = harness.insert_raw("durable.noop", '{"args": [1], "kwar')
        misshapen = harness.insert_raw("durable.noop", '{"args": 5, "kwargs": []}')
        invalid = await channel.enqueue(typed_as_text.bind("twelve"))
        fine = await channel.enqueue(noop.bind(3))
        await harness.all_settled([unknown.id, garbled, misshapen, invalid.id, fine.id])
        assert time.monotonic() - started < 15.0  # not after a 30 s lease
        later = await channel.enqueue(noop.bind(4))  # the consumer is still there
        await harness.all_settled([later.id])
    finally:
        await channel.aclose()
    dead = await harness.dead_letters()
    assert {k: v.reason for k, v in dead.items()} == {
        unknown.id: "unknown_task",
        garbled: "bad_payload",
        misshapen: "bad_payload",
        invalid.id: "bad_payload",
    }
    assert dead[invalid.id].kwargs == {}
    assert dead[invalid.id].args == ["twelve"]
    for rejected in (unknown.id, garbled, misshapen, invalid.id):
        assert not harness.starts(rejected)
    report = await worker.stop()
    assert report["exit"] == 0
    assert "durable.unregistered" in worker.stderr()  # logged at ERROR
    assert harness.left_in_store() == 0


async def test_a_task_longer_than_its_lease_runs_once(harness: Harness) -> None:
    """Lease 1 s, a task of 3.5 s, two workers on the file: the lease is renewed while
    it runs, so the other worker never claims it; it runs once, deliveries 1."""
    workers = [harness.worker(consumers=2, lease=1.0) for _ in range(2)]
    for started in workers:
        await started.ready()
    channel = harness.channel()
    try:
        long = await channel.enqueue(slow.bind(0, 3.5))
        short = [await channel.enqueue(noop.bind(n)) for n in range(1, 20)]
    finally:
        await channel.aclose()
    await harness.all_settled([long.id, *(item.id for item in short)])
    assert [r.deliveries for r in harness.starts(long.id)] == [1]
    for started in workers:
        report = await started.stop()
        assert report["stats"]["redelivered"] == 0
    assert harness.left_in_store() == 0


async def test_sigterm_releases_held_items_and_another_pool_takes_them_at_once(
    harness: Harness,
) -> None:
    """A worker holding 3 running items and a backlog gets SIGTERM (deadline 0.3 s):
    it releases what it held, and a second worker runs those items (deliveries 2)
    long before the 30 s lease would have let it."""
    first = harness.worker(consumers=3, lease=30.0, deadline=0.3)
    channel = harness.channel()
    try:
        held = [await channel.enqueue(block_first.bind(n)) for n in range(3)]
        await first.ready()
        for item in held:
            await harness.wait_started(item.id, deliveries=1)
        backlog = [await channel.enqueue(noop.bind(n)) for n in range(3, 43)]
    finally:
        await channel.aclose()
    second = harness.worker(consumers=2, lease=30.0)
    await second.ready()
    signalled = time.monotonic()
    first_report = await first.stop()
    await harness.all_settled([item.id for item in held + backlog])
    assert time.monotonic() - signalled < 15.0  # released, not left for the lease
    assert set(first_report["released"]) >= {str(item.id) for item in held}
    assert first_report["stats"]["released"] == len(first_report["released"])
    assert first_report["exit"] == 0  # released is not lost: a clean drain
    for item in held:
        assert [(r.deliveries, r.pid) for r in harness.starts(item.id)] == [
            (1, first.pid),
            (2, second.pid),
        ]
    assert not await harness.dead_letters()
    second_report = await second.stop()
    assert second_report["exit"] == 0
    assert harness.left_in_store() == 0


async def test_two_processes_on_one_file_never_run_an_item_twice(harness: Harness) -> None:
    """Two workers of 4 consumers share one file while the test produces 300 items:
    each item runs exactly once (deliveries 1), and both workers take a share."""
    workers = [harness.worker(consumers=4, lease=2.0) for _ in range(2)]
    for started in workers:
        await started.ready()
    channel = harness.channel()
    try:
        accepted = [await channel.enqueue(slow.bind(n, 0.005)) for n in range(300)]
    finally:
        await channel.aclose()
    ids = [item.id for item in accepted]
    assert len(set(ids)) == len(ids)
    await harness.all_settled(ids)
    starts = Counter(r.id for r in harness.runs_so_far() if r.event == "start")
    assert {k: v for k, v in starts.items() if v != 1} == {}
    assert set(starts) == set(ids)
    assert all(r.deliveries == 1 for r in harness.runs_so_far())
    assert {r.pid for r in harness.runs_so_far()} == {w.pid for w in workers}
    assert not await harness.dead_letters()
    for started in workers:
        report = await started.stop()
        assert report["exit"] == 0
        assert report["stats"]["redelivered"] == 0
    assert harness.left_in_store() == 0


async def test_with_a_crash_only_the_items_the_dead_process_held_run_twice(
    harness: Harness,
) -> None:
    """Two workers share 300 items; one is killed with SIGKILL midway and started
    again. Every item succeeds; an item that ran twice first started in the killed
    process (it was running there, or had finished without its acknowledgement
    committed, when the process died) and ran again with deliveries 2; no other
    item ran twice."""
    lease = 1.0
    victim = harness.worker(consumers=4, lease=lease)
    other = harness.worker(consumers=4, lease=lease)
    channel = harness.channel()
    try:
        accepted = [await channel.enqueue(slow.bind(n, 0.01)) for n in range(300)]
    finally:
        await channel.aclose()
    await victim.ready()
    await other.ready()
    await wait_until(
        lambda: sum(r.pid == victim.pid for r in harness.runs_so_far() if r.event == "done") >= 30,
        "the victim to finish 30 items",
    )
    victim.kill9()
    restarted = harness.worker(consumers=4, lease=lease)
    ids = [item.id for item in accepted]
    await harness.all_settled(ids)
    await restarted.ready()
    assert not await harness.dead_letters()
    starts: dict[UUID, list[Run]] = {}
    for run in harness.runs_so_far():
        if run.event == "start":
            starts.setdefault(run.id, []).append(run)
    assert set(starts) == set(ids)
    twice = {k: sorted(v, key=lambda r: r.deliveries) for k, v in starts.items() if len(v) > 1}
    for runs in twice.values():
        assert len(runs) == 2, runs
        first, second = runs
        assert first.pid == victim.pid, runs  # held by the process that died
        assert first.deliveries == 1, runs
        assert second.deliveries == 2, runs
        assert second.pid != victim.pid, runs
    # What ran twice is what the victim held when it died: at most one running item
    # per consumer, and items it had finished whose acknowledgement was not committed
    # yet. Acknowledgements commit in the order the items finished, so those are the
    # last items the victim finished, with nothing acknowledged after them.
    finished = [r.id for r in harness.runs_so_far() if r.pid == victim.pid and r.event == "done"]
    rerun_finished = {k for k in twice if k in set(finished)}
    assert len(set(twice) - rerun_finished) <= 4, twice
    assert rerun_finished == set(finished[len(finished) - len(rerun_finished) :]), twice
    for started in (other, restarted):
        report = await started.stop()
        assert report["exit"] == 0
    assert harness.left_in_store() == 0
