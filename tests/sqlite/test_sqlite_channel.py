"""SqliteChannel on its own: arguments, enqueue, claims, leases, settlements."""

from __future__ import annotations

import datetime
import math
import sqlite3
import threading
import time
from typing import TYPE_CHECKING
from uuid import UUID

import anyio
import pytest

from workpool import (
    Channel,
    PoolClosedError,
    QueueFullError,
    RetryPolicy,
    Scope,
    SessionManager,
    SqliteChannel,
    StopToken,
    WorkItem,
    task,
)
from workpool._seam import Settle

if TYPE_CHECKING:
    from pathlib import Path

    from tests.sqlite.conftest import MakeChannel

pytestmark = pytest.mark.anyio


@task(name="tests.sqlite.channel.add")
async def add(
    scope: Scope, stopping: StopToken, x: int, when: datetime.datetime | None = None
) -> None:
    pass


@task(name="tests.sqlite.channel.plain")
def plain(scope: Scope, stopping: StopToken) -> None:
    pass


TASKS = {add.name: add, plain.name: plain}


async def noop(scope: Scope, stopping: StopToken) -> None:
    pass


async def claim(channel: SqliteChannel) -> WorkItem:
    with anyio.fail_after(10):
        return await channel.claim()


def store_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("workpool sqlite"))


async def nothing_due(channel: SqliteChannel) -> bool:
    """True when no claim comes back within a few poll intervals."""
    with anyio.move_on_after(0.3):
        item = await channel.claim()
        channel.settle(item, Settle.RELEASED)
        return False
    return True


# -- arguments -----------------------------------------------------------------------------


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"full_mode": "drop_oldest"}, "full_mode"),
            ({"full_mode": "drop_write"}, "full_mode"),
            ({"full_mode": "nonsense"}, "full_mode"),
            ({"lease": 0}, "lease"),
            ({"lease": -1.0}, "lease"),
            ({"lease": math.inf}, "lease"),
            ({"max_deliveries": 0}, "max_deliveries"),
            ({"synchronous": "sometimes"}, "synchronous"),
            ({"capacity": 0}, "capacity"),
            ({"outage_timeout": 0}, "outage_timeout"),
            ({"queue": ""}, "queue"),
        ],
    )
    def test_bad_arguments_raise_value_error(
        self, db: Path, kwargs: dict[str, object], match: str
    ) -> None:
        """Unsupported arguments fail in the constructor, naming the argument."""
        with pytest.raises(ValueError, match=match):
            SqliteChannel(db, **kwargs)  # type: ignore[arg-type]

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A file in a directory that does not exist is refused at once."""
        with pytest.raises(ValueError, match="does not exist"):
            SqliteChannel(tmp_path / "nowhere" / "jobs.db")

    def test_is_a_durable_channel(self, db: Path) -> None:
        """It fits the seam; durable; long backoffs above lease/2 are rescheduled."""
        channel = SqliteChannel(db, lease=12.0, full_mode="reject", synchronous="FULL")
        assert isinstance(channel, Channel)
        assert channel.durable is True
        assert channel.max_local_backoff == 6.0
        assert channel.lease == 12.0
        assert channel.capacity is None
        assert channel.take_all() == []
        assert "jobs.db" in repr(channel)


# -- producers ------------------------------------------------------------------------------


async def test_enqueue_needs_task_calls(make_channel: MakeChannel) -> None:
    """Plain functions, retry= and enqueue_nowait are TypeErrors that say what to do."""
    channel = make_channel()
    with pytest.raises(TypeError, match=r"@task.*bind"):
        await channel.enqueue(noop)
    with pytest.raises(TypeError, match="retry"):
        await channel.enqueue(add.bind(1), retry=RetryPolicy.exponential(3))
    with pytest.raises(TypeError, match="await"):
        channel.enqueue_nowait(add.bind(1))
    with pytest.raises(TypeError, match="name"):
        await channel.enqueue(add.bind(1), name="other")
    with pytest.raises(TypeError, match="key"):
        await channel.enqueue(add.bind(1), key="")
    with pytest.raises(ValueError, match="delay"):
        await channel.enqueue(add.bind(1), delay=-1)
    assert channel.enqueued_total == 0


async def test_arguments_that_do_not_travel(make_channel: MakeChannel) -> None:
    """A value that is not JSON, or a payload over max_message_bytes, stores nothing."""
    channel = make_channel(max_message_bytes=100)
    with pytest.raises(TypeError, match="object"):
        await channel.enqueue(add.bind(object()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_message_bytes"):
        await channel.enqueue(add.bind("x" * 200))  # type: ignore[arg-type]
    await channel.open({})
    assert await nothing_due(channel)


async def test_enqueue_claim_settle(make_channel: MakeChannel) -> None:
    """An item comes back from the store decoded, with its id, and is gone once done."""
    channel = make_channel()
    session = SessionManager().create_session()
    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    item = await channel.enqueue(add.bind(7, when=when), session, timeout=3.0)
    assert isinstance(item.id, UUID)
    assert (item.name, item.deliveries, item.attempts) == (add.name, 0, 0)
    assert item.parent_session_id == session.id
    assert channel.enqueued_total == 1
    await channel.open(TASKS)
    claimed = await claim(channel)
    assert claimed.id == item.id
    assert claimed.work == add.bind(7, when=when)
    assert isinstance(claimed.work.kwargs["when"], datetime.datetime)  # type: ignore[attr-defined]
    assert (claimed.deliveries, claimed.attempts, claimed.timeout) == (1, 0, 3.0)
    assert claimed.parent_session_id == session.id
    assert claimed.rejection is None
    channel.settle(claimed, Settle.DONE)
    with anyio.fail_after(10):
        await channel.join()
    assert await nothing_due(channel)


async def test_claims_are_fifo(make_channel: MakeChannel) -> None:
    """Due items are claimed in the order they were stored."""
    channel = make_channel()
    ids = [(await channel.enqueue(add.bind(i))).id for i in range(5)]
    await channel.open(TASKS)
    claimed = [await claim(channel) for _ in range(5)]
    assert [item.id for item in claimed] == ids
    for item in claimed:
        channel.settle(item, Settle.DONE)


async def test_several_waiting_consumers_each_get_one(make_channel: MakeChannel) -> None:
    """Concurrent claims get distinct items."""
    channel = make_channel()
    await channel.open(TASKS)
    got: list[WorkItem] = []

    async def consumer() -> None:
        got.append(await channel.claim())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            for i in range(3):
                await channel.enqueue(add.bind(i))
    assert sorted(item.work.args[0] for item in got) == [0, 1, 2]  # type: ignore[attr-defined]
    for item in got:
        channel.settle(item, Settle.DONE)


async def test_delay(make_channel: MakeChannel) -> None:
    """A delayed item is not claimed before its delay; others go first."""
    channel = make_channel()
    late = await channel.enqueue(add.bind(1), delay=0.5)
    assert late.not_before > late.enqueued_at
    soon = await channel.enqueue(add.bind(2))
    await channel.open(TASKS)
    first = await claim(channel)
    assert first.id == soon.id
    second = await claim(channel)
    assert second.id == late.id
    assert time.monotonic() >= late.not_before
    for item in (first, second):
        channel.settle(item, Settle.DONE)


async def test_key(make_channel: MakeChannel) -> None:
    """A key held by an unfinished item returns that item; once done, the key is free."""
    channel = make_channel()
    first = await channel.enqueue(add.bind(1), key="order-1")
    again = await channel.enqueue(add.bind(2), key="order-1")
    other = await channel.enqueue(add.bind(3), key="order-2")
    assert again.id == first.id
    assert other.id != first.id
    assert channel.enqueued_total == 2
    await channel.open(TASKS)
    claimed = await claim(channel)
    assert claimed.key == "order-1"
    running = await channel.enqueue(add.bind(4), key="order-1")  # still unfinished
    assert running.id == first.id
    channel.settle(claimed, Settle.DONE)
    with anyio.fail_after(10):
        while (await channel.enqueue(add.bind(5), key="order-1")).id == first.id:
            await anyio.sleep(0.01)  # the acknowledgement is committed in the next batch
    for _ in range(2):
        channel.settle(await claim(channel), Settle.DONE)


async def test_capacity_reject(make_channel: MakeChannel) -> None:
    """In reject mode, enqueue over the capacity raises QueueFullError."""
    channel = make_channel(capacity=2, full_mode="reject")
    await channel.enqueue(add.bind(1))
    await channel.enqueue(add.bind(2))
    with pytest.raises(QueueFullError, match="reject"):
        await channel.enqueue(add.bind(3))
    assert channel.rejected_total == 1
    await channel.open(TASKS)
    claimed = await claim(channel)
    with pytest.raises(QueueFullError):  # running items count as unfinished
        await channel.enqueue(add.bind(3))
    channel.settle(claimed, Settle.DONE)


async def test_capacity_wait(make_channel: MakeChannel) -> None:
    """In wait mode, enqueue over the capacity waits until an item finishes."""
    channel = make_channel(capacity=1)
    await channel.enqueue(add.bind(1))
    await channel.open(TASKS)
    stored: list[WorkItem] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def produce() -> None:
                stored.append(await channel.enqueue(add.bind(2)))

            tg.start_soon(produce)
            claimed = await claim(channel)
            await anyio.sleep(0.2)
            assert stored == []
            channel.settle(claimed, Settle.DONE)
    assert len(stored) == 1
    channel.settle(await claim(channel), Settle.DONE)


async def test_closed_channel(make_channel: MakeChannel) -> None:
    """After close, enqueue and claims raise PoolClosedError."""
    channel = make_channel()
    channel.close()
    assert channel.closed
    with pytest.raises(PoolClosedError):
        await channel.enqueue(add.bind(1))
    with pytest.raises(PoolClosedError):
        await channel.claim()
    with pytest.raises(PoolClosedError):
        channel.claim_nowait()


# -- leases and outcomes --------------------------------------------------------------------


async def test_lease_expiry_redelivers(make_channel: MakeChannel) -> None:
    """An item whose lease expires (its process died) is claimed again, deliveries + 1,
    and the late acknowledgement of the first claim changes nothing."""
    first_channel = make_channel(lease=0.2)
    item = await first_channel.enqueue(add.bind(1))
    await first_channel.open(TASKS)
    lost = await claim(first_channel)
    second_channel = make_channel(lease=30.0)
    await second_channel.open(TASKS)
    again = await claim(second_channel)
    assert again.id == item.id
    assert (again.deliveries, again.attempts) == (2, 1)
    first_channel.settle(lost, Settle.DONE)  # too late: not its claim any more
    await first_channel.aclose()
    assert await nothing_due(second_channel) is True
    second_channel.settle(again, Settle.DONE)


async def test_max_deliveries_rejects_at_claim(make_channel: MakeChannel) -> None:
    """After max_deliveries claims without an outcome, the next claim carries a
    delivery_limit rejection (the pool dead-letters it without running)."""
    channel = make_channel(lease=0.1, max_deliveries=2)
    item = await channel.enqueue(add.bind(1))
    await channel.open(TASKS)
    assert (await claim(channel)).deliveries == 1
    assert (await claim(channel)).deliveries == 2
    third = await claim(channel)
    assert third.id == item.id
    assert third.rejection is not None
    reason, error = third.rejection
    assert reason == "delivery_limit"
    assert "max_deliveries=2" in str(error)
    assert third.deliveries == 2
    channel.settle(third, Settle.DEAD, reason=reason, error=error)
    with anyio.fail_after(10):
        await channel.join()
    [letter] = await channel.dead_letters()
    assert (letter.id, letter.reason, letter.deliveries) == (item.id, "delivery_limit", 2)


async def test_rejections_at_claim(make_channel: MakeChannel, db: Path) -> None:
    """Unknown names, payloads that are not JSON and arguments that do not validate
    come back rejected with their reason, in order."""
    channel = make_channel()
    await channel.enqueue(add.bind(1))
    await channel.enqueue(plain.bind())
    await channel.open({add.name: add})  # plain is not registered here
    with sqlite3.connect(db) as conn:
        for seq, payload in ((100, "{not json"), (101, '{"args": ["x"], "kwargs": {}}')):
            conn.execute(
                "INSERT INTO workpool_messages (seq, id, queue, name, payload, due_at, "
                "available_at, enqueued_at) VALUES (?, ?, 'default', ?, ?, 0, 0, 0)",
                (seq, str(UUID(int=seq)), add.name, payload),
            )
    conn.close()
    items = [await claim(channel) for _ in range(4)]
    reasons = {item.id.int: item.rejection[0] if item.rejection else None for item in items}
    assert sorted(reasons.items(), key=lambda pair: pair[0] in (100, 101))[2:] == [
        (100, "bad_payload"),
        (101, "bad_payload"),
    ]
    assert sorted(str(r) for r in reasons.values()) == sorted(
        ["None", "unknown_task", "bad_payload", "bad_payload"]
    )
    for item in items:
        channel.settle(item, Settle.DONE)


async def test_release_hands_back_at_once(make_channel: MakeChannel) -> None:
    """A released item is claimable at once by another channel, deliveries kept."""
    channel = make_channel()
    item = await channel.enqueue(add.bind(1))
    await channel.open(TASKS)
    claimed = await claim(channel)
    channel.settle(claimed, Settle.RELEASED)
    await channel.aclose()
    other = make_channel()
    await other.open(TASKS)
    again = await claim(other)
    assert (again.id, again.deliveries) == (item.id, 2)
    other.settle(again, Settle.DONE)


async def test_reschedule_keeps_attempts(make_channel: MakeChannel) -> None:
    """A rescheduled item is due after its delay, its attempts carried over."""
    channel = make_channel()
    item = await channel.enqueue(add.bind(1))
    await channel.open(TASKS)
    claimed = await claim(channel)
    claimed.attempts = 3
    channel.settle(claimed, Settle.RESCHEDULED, delay=1.0)
    assert await nothing_due(channel)
    again = await claim(channel)
    assert (again.id, again.attempts, again.deliveries) == (item.id, 3, 2)
    channel.settle(again, Settle.DONE)


async def test_two_channels_share_a_file(make_channel: MakeChannel) -> None:
    """Two channels on one file never get the same item."""
    producer = make_channel()
    ids = {(await producer.enqueue(add.bind(i))).id for i in range(40)}
    first, second = make_channel(), make_channel()
    seen: list[UUID] = []

    async def consume(channel: SqliteChannel) -> None:
        await channel.open(TASKS)
        while True:
            with anyio.move_on_after(0.5):
                item = await channel.claim()
                seen.append(item.id)
                channel.settle(item, Settle.DONE)
                continue
            return

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, first)
            tg.start_soon(consume, second)
    assert sorted(seen) == sorted(ids)


async def test_file_settings_and_thread_end(make_channel: MakeChannel, db: Path) -> None:
    """The file is in WAL mode; the connection thread ends at aclose, and a later
    dead-letter call starts one again (ended by the next aclose)."""
    with anyio.fail_after(10):  # earlier tests' channels may still be ending theirs
        while store_threads():
            await anyio.sleep(0.01)
    channel = make_channel(synchronous="full")
    await channel.enqueue(add.bind(1))
    assert store_threads() == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    await channel.aclose()
    await channel.aclose()  # idempotent
    with anyio.fail_after(10):
        while store_threads():
            await anyio.sleep(0.01)
    assert await channel.dead_letters() == []
    await channel.aclose()
    with anyio.fail_after(10):
        while store_threads():
            await anyio.sleep(0.01)
    with pytest.raises(PoolClosedError):
        await channel.enqueue(add.bind(2))


async def test_cancelled_claims_lose_nothing(make_channel: MakeChannel) -> None:
    """Consumers cancelled while their claims are in flight leave the items claimable:
    handed out to the next claim, or handed back at close."""
    channel = make_channel()
    ids = {(await channel.enqueue(add.bind(i))).id for i in range(3)}
    await channel.open(TASKS)
    for _ in range(5):
        with anyio.move_on_after(0):
            await channel.claim()
    got = [await claim(channel)]
    await channel.aclose()
    other = make_channel()
    await other.open(TASKS)
    got += [await claim(other), await claim(other)]
    assert {item.id for item in got} == ids
    assert [item.deliveries for item in got] == [1, 1, 1]
    for item in got[1:]:
        other.settle(item, Settle.DONE)


async def test_queues_in_one_file_are_separate(make_channel: MakeChannel) -> None:
    """Items, keys and dead letters belong to their queue."""
    mail, billing = make_channel(queue="mail"), make_channel(queue="billing")
    first = await mail.enqueue(add.bind(1), key="k")
    second = await billing.enqueue(add.bind(2), key="k")
    assert first.id != second.id
    await billing.open(TASKS)
    claimed = await claim(billing)
    assert claimed.id == second.id
    billing.settle(claimed, Settle.DEAD, reason="failed", error=ValueError("no"))
    with anyio.fail_after(10):
        await billing.join()
    assert [letter.id for letter in await billing.dead_letters()] == [second.id]
    assert await mail.dead_letters() == []
    assert await mail.replay() == 0
    await mail.open(TASKS)
    mail.settle(await claim(mail), Settle.DONE)
