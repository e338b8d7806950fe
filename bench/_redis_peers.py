"""workpool's Redis channel and its peers, each set up as its documentation shows.

Every implementation runs its worker **in this process**, on the same event loop as
the producer (the peers' APIs all allow it): one worker with 16 consumers. A round
opens the implementation on a fresh queue name (`Impl.open`), lets its worker reach
its first blocking read, then times from the first enqueue to the last completion,
and finally stops the worker and deletes every key whose name holds the round's tag
(never anything else: no FLUSHDB, no FLUSHALL).

The task is the same no-op everywhere: it takes the ``perf_counter()`` of just before
its enqueue call as its one argument and reports to `TALLY` (which counts, keeps the
latency samples when asked, and wakes the round after the last item).

Results are kept by nobody: arq ``keep_result=0``, saq ``ttl=-1``, streaq ``ttl=0``,
taskiq without a result backend; workpool keeps none.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import coredis

from workpool import Scope, StopToken, WorkerPool, task

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from saq.types import Context as SaqContext

logger = logging.getLogger("bench.redis")
# saq warns at every stop that its consumers, blocked in BLMOVE, had to be cancelled
logging.getLogger("saq").setLevel(logging.ERROR)

HOST = "127.0.0.1"
PORT = 6379
URL = f"redis://{HOST}:{PORT}/0"
#: every consumer count of the scenario (arq max_jobs, saq/streaq concurrency, ...)
CONSUMERS = 16
#: the ceiling's batch: XADD pipelined this many at a time, XREADGROUP COUNT this
CEILING_BATCH = 100
#: arq polls its sorted set every poll_delay (default 0.5 s: 16 jobs per poll at
#: most would cap it near 200/s here); lower is faster on this machine
ARQ_POLL_DELAY = 0.01


# -- the no-op task's tally ------------------------------------------------------------


class Tally:
    """Counts the no-op's runs; wakes the round after the expected number."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.last = 0.0
        self.keep_samples = False
        self.samples: list[float] = []
        self.done: anyio.Event | None = None

    def reset(self, expected: int, *, keep_samples: bool = False) -> None:
        self.count = 0
        self.expected = expected
        self.last = 0.0
        self.keep_samples = keep_samples
        self.samples = []
        self.done = anyio.Event()

    def hit(self, sent: float) -> None:
        now = time.perf_counter()
        if self.keep_samples:
            self.samples.append(now - sent)
        self.count += 1
        if self.count == self.expected:
            self.last = now
            assert self.done is not None
            self.done.set()

    async def wait(self, timeout: float) -> float:
        """Wait for the last item (at most *timeout* s); the time it ran."""
        assert self.done is not None
        with anyio.fail_after(timeout):
            await self.done.wait()
        return self.last


TALLY = Tally()


# -- the implementations ---------------------------------------------------------------


class Producer(Protocol):
    """What a round gets from an open implementation: ``enqueue(sent)``."""

    @property
    def enqueue(self) -> Callable[[float], Awaitable[object]]: ...


@dataclass(frozen=True)
class Impl:
    """One row: a label, the backend it runs on, and how it opens on a queue."""

    label: str
    backend: str
    open: Callable[[str], Any]  # queue name -> async context manager -> Producer
    #: enqueue a whole round in one call (streaq's ``enqueue_many``), if it has one
    bulk: bool = False
    peer: bool = True
    note: str = ""


class _Calls:
    """A `Producer` around a plain enqueue callable."""

    def __init__(self, call: Callable[[float], Awaitable[object]]) -> None:
        self.enqueue = call


# workpool ------------------------------------------------------------------------------


@task(name="bench.redis.noop")
async def wp_noop(scope: Scope, stopping: StopToken, sent: float) -> None:
    TALLY.hit(sent)


@asynccontextmanager
async def open_workpool(queue: str) -> AsyncIterator[Producer]:
    from workpool.redis import RedisChannel

    channel = RedisChannel(URL, queue=queue)
    async with WorkerPool(channel=channel, tasks=[wp_noop], consumers=CONSUMERS) as pool:
        bind = wp_noop.bind
        enqueue = pool.enqueue

        async def submit(sent: float) -> object:
            return await enqueue(bind(sent))

        yield _Calls(submit)


def workpool_available() -> str | None:
    """None when ``workpool.redis.RedisChannel`` imports, else why not."""
    try:
        from workpool.redis import RedisChannel  # noqa: F401
    except ImportError as exc:
        return f"workpool.redis is not available ({exc})"
    return None


# the ceiling: a raw coredis stream loop -----------------------------------------------


async def _ceiling_noop(sent: float) -> None:
    TALLY.hit(sent)


class _Ceiling:
    """Pipelined ``XADD``; one loop of ``XREADGROUP COUNT 100`` + ``XACK``/``XDEL``."""

    def __init__(self, client: coredis.Redis[bytes], stream: str) -> None:
        self.client = client
        self.stream = stream

    async def enqueue_many(self, count: int) -> None:
        client, stream = self.client, self.stream
        for start in range(0, count, CEILING_BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(min(CEILING_BATCH, count - start)):
                    pipe.xadd(stream, {b"t": repr(time.perf_counter()).encode()})

    async def _enqueue(self, sent: float) -> object:
        return await self.client.xadd(self.stream, {b"t": repr(sent).encode()})

    @property
    def enqueue(self) -> Callable[[float], Awaitable[object]]:
        return self._enqueue

    async def consume(self) -> None:
        client, stream = self.client, self.stream
        key = stream.encode()
        while True:
            got = await client.xreadgroup("g", "c", {stream: ">"}, count=CEILING_BATCH, block=500)
            if not got:
                continue
            entries = got[key]
            for entry in entries:
                await _ceiling_noop(float(entry.field_values[b"t"]))
            ids = [entry.identifier for entry in entries]
            async with client.pipeline(transaction=True) as pipe:
                pipe.xack(stream, "g", ids)
                pipe.xdel(stream, ids)


@asynccontextmanager
async def open_ceiling(queue: str) -> AsyncIterator[_Ceiling]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(URL, decode_responses=False)
    async with client, anyio.create_task_group() as tg:
        stream = f"{queue}:stream"
        await client.xgroup_create(stream, "g", identifier="0", mkstream=True)
        ceiling = _Ceiling(client, stream)
        tg.start_soon(ceiling.consume)
        yield ceiling
        tg.cancel_scope.cancel()


# arq ------------------------------------------------------------------------------------


async def arq_noop(ctx: dict[str, Any], sent: float) -> None:
    TALLY.hit(sent)


@asynccontextmanager
async def open_arq(queue: str) -> AsyncIterator[Producer]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    redis = await create_pool(RedisSettings(host=HOST, port=PORT), default_queue_name=queue)
    worker = Worker(
        functions=[func(arq_noop, name="noop")],
        redis_pool=redis,
        queue_name=queue,
        max_jobs=CONSUMERS,
        poll_delay=ARQ_POLL_DELAY,
        keep_result=0,
        handle_signals=False,
    )
    running = asyncio.ensure_future(worker.main())
    numbers = itertools.count()
    enqueue_job = redis.enqueue_job

    async def submit(sent: float) -> object:
        # a job id of our own only so that the round's keys all hold its tag
        return await enqueue_job("noop", sent, _job_id=f"{queue}-{next(numbers)}")

    try:
        yield _Calls(submit)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        # close() cancels the jobs still finishing and re-raises their cancellation
        # when arq does not own the signals: let them finish first
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.close()


# saq ------------------------------------------------------------------------------------


async def saq_noop(ctx: SaqContext, *, sent: float) -> None:
    TALLY.hit(sent)


@asynccontextmanager
async def open_saq(queue: str) -> AsyncIterator[Producer]:
    from saq import Queue, Worker

    saq_queue = Queue.from_url(URL, name=queue)
    await saq_queue.connect()
    worker = Worker(saq_queue, functions=[("noop", saq_noop)], concurrency=CONSUMERS)
    worker.SIGNALS = []  # the bench's loop owns the signals
    running = asyncio.ensure_future(worker.start())
    enqueue = saq_queue.enqueue

    async def submit(sent: float) -> object:
        return await enqueue("noop", sent=sent, ttl=-1)

    try:
        yield _Calls(submit)
    finally:
        await worker.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await saq_queue.disconnect()


# taskiq-redis (its stream broker) -----------------------------------------------------


async def taskiq_noop(sent: float) -> None:
    TALLY.hit(sent)


@asynccontextmanager
async def open_taskiq(queue: str) -> AsyncIterator[Producer]:
    from taskiq.api import run_receiver_task
    from taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(URL, queue_name=queue, consumer_group_name=queue)
    kicker = broker.register_task(taskiq_noop, task_name="bench.noop")
    await broker.startup()
    # the worker command's `--max-async-tasks 16 --max-prefetch 16`, in-process
    running = asyncio.ensure_future(
        run_receiver_task(broker, max_async_tasks=CONSUMERS, max_prefetch=CONSUMERS)
    )
    kiq = kicker.kiq

    async def submit(sent: float) -> object:
        return await kiq(sent)

    try:
        yield _Calls(submit)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        # the receiver's last callbacks (acknowledgements) run in tasks of their own
        await asyncio.sleep(0.2)
        await broker.shutdown()


# streaq ---------------------------------------------------------------------------------


async def streaq_noop(sent: float) -> None:
    TALLY.hit(sent)


class _Streaq:
    def __init__(self, worker: Any, registered: Any) -> None:
        self.worker = worker
        self.registered = registered

    async def _enqueue(self, sent: float) -> object:
        return await self.registered.enqueue(sent)

    @property
    def enqueue(self) -> Callable[[float], Awaitable[object]]:
        return self._enqueue

    async def enqueue_many(self, count: int) -> None:
        enqueue = self.registered.enqueue
        perf_counter = time.perf_counter
        await self.worker.enqueue_many([enqueue(perf_counter()) for _ in range(count)])


@asynccontextmanager
async def open_streaq(queue: str) -> AsyncIterator[_Streaq]:
    from streaq import Worker

    worker = Worker(redis_url=URL, concurrency=CONSUMERS, queue_name=queue, handle_signals=False)
    registered = worker.task(ttl=0, silent=True, name="noop")(streaq_noop)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run_async)
        yield _Streaq(worker, registered)
        # stop once idle: a consumer cancelled inside its finishing pipeline fails
        # with "Connection lost" instead of stopping
        while worker._count:
            await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


# -- the rows ----------------------------------------------------------------------------

WORKPOOL = "workpool"
CEILING = "raw coredis loop (ceiling)"

IMPLS: list[Impl] = [
    Impl(WORKPOOL, "asyncio", open_workpool, peer=False),
    Impl(f"{WORKPOOL} (trio)", "trio", open_workpool, peer=False),
    Impl(CEILING, "asyncio", open_ceiling, bulk=True, peer=False),
    Impl(f"{CEILING} (trio)", "trio", open_ceiling, bulk=True, peer=False),
    Impl("arq", "asyncio", open_arq, note=f"max_jobs=16, poll_delay={ARQ_POLL_DELAY}"),
    Impl("saq", "asyncio", open_saq, note="concurrency=16"),
    Impl(
        "taskiq-redis (stream)",
        "asyncio",
        open_taskiq,
        note="RedisStreamBroker, max_async_tasks=16, max_prefetch=16",
    ),
    Impl("streaq", "asyncio", open_streaq, note="concurrency=16"),
    Impl(
        "streaq (enqueue_many)",
        "asyncio",
        open_streaq,
        bulk=True,
        note="one pipelined enqueue_many per round",
    ),
]


# -- rounds --------------------------------------------------------------------------------


def fresh_queue(label: str) -> str:
    """A queue name of this round alone: every key the round makes holds its tag."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in label.split(" (")[0])
    return f"wpbench-{slug}-{uuid.uuid4().hex[:12]}"


async def delete_keys(tag: str) -> int:
    """Delete every key whose name holds *tag* (the round's own keys, nothing else)."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(URL, decode_responses=False)
    deleted = 0
    async with client:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"*{tag}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(batch)
                batch = []
        if batch:
            deleted += await client.delete(batch)
    return deleted


async def _produce(producer: Producer, count: int) -> None:
    enqueue = producer.enqueue
    perf_counter = time.perf_counter
    for _ in range(count):
        await enqueue(perf_counter())


#: after the worker has started, before the first enqueue: its first blocking read
SETTLE = 0.2


async def throughput_round(
    impl: Impl, items: int, producers: int, timeout: float
) -> tuple[float, float]:
    """Seconds from the first enqueue to the last no-op's run, and this process's CPU
    seconds meanwhile (producer and worker together; the Redis server not counted)."""
    queue = fresh_queue(impl.label)
    try:
        async with impl.open(queue) as producer:
            await anyio.sleep(SETTLE)
            TALLY.reset(items)
            cpu = time.process_time()
            started = time.perf_counter()
            if impl.bulk:
                await producer.enqueue_many(items)
            else:
                share, extra = divmod(items, producers)
                async with anyio.create_task_group() as tg:
                    for number in range(producers):
                        tg.start_soon(_produce, producer, share + (number < extra))
            finished = await TALLY.wait(timeout)
            cpu = time.process_time() - cpu
        if TALLY.count != items:  # counted once the worker has stopped
            logger.warning("%s ran %d tasks for %d enqueued", impl.label, TALLY.count, items)
        return finished - started, cpu
    finally:
        with anyio.CancelScope(shield=True):
            await delete_keys(queue)


async def latency_round(impl: Impl, items: int, rate: float, timeout: float) -> list[float]:
    """Enqueue-to-start latencies of *items* enqueued at *rate* per second, evenly."""
    queue = fresh_queue(impl.label)
    interval = 1.0 / rate
    perf_counter = time.perf_counter
    try:
        async with impl.open(queue) as producer:
            await anyio.sleep(SETTLE)
            TALLY.reset(items, keep_samples=True)
            enqueue = producer.enqueue
            start = perf_counter()
            for index in range(items):
                delay = start + index * interval - perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                await enqueue(perf_counter())
            await TALLY.wait(timeout)
            return list(TALLY.samples)
    finally:
        with anyio.CancelScope(shield=True):
            await delete_keys(queue)
