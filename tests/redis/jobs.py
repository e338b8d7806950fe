"""Tasks used by the Redis tests, in-process and in worker processes."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import anyio

from tests.redis.resp import command
from workpool import RetryPolicy, task

if TYPE_CHECKING:
    from workpool import Scope, StopToken

#: (n, deliveries, attempt) of each run in this process.
RAN: list[tuple[int, int, int]] = []


@task(name="tests.redis.record")
async def record(scope: Scope, stopping: StopToken, n: int) -> None:
    RAN.append((n, scope.item.deliveries, scope.attempt))


@task(name="tests.redis.nap")
async def nap(scope: Scope, stopping: StopToken, n: int, seconds: float) -> None:
    await anyio.sleep(seconds)
    RAN.append((n, scope.item.deliveries, scope.attempt))


@task(name="tests.redis.flaky")
async def flaky(scope: Scope, stopping: StopToken, n: int, failures: int) -> None:
    if scope.attempt <= failures:
        raise ValueError(f"attempt {scope.attempt} fails")
    RAN.append((n, scope.item.deliveries, scope.attempt))


@task(name="tests.redis.mark")
def mark(
    scope: Scope, stopping: StopToken, port: int, queue: str, n: int, seconds: float = 0.0
) -> None:
    """Record the start and the end of a run in Redis (from any process)."""
    prefix = f"workpool:{{{queue}}}:test:"
    command(port, "RPUSH", prefix + "started", f"{n}:{os.getpid()}")
    if seconds:
        time.sleep(seconds)
    command(port, "RPUSH", prefix + "ran", f"{n}:{os.getpid()}:{scope.item.deliveries}")


def runs(port: int, queue: str, what: str = "ran") -> list[str]:
    """What `mark` recorded, in order."""
    reply = command(port, "LRANGE", f"workpool:{{{queue}}}:test:{what}", 0, -1)
    assert isinstance(reply, list)
    return [str(r) for r in reply]


@task(name="tests.redis.rescheduled", retry=RetryPolicy.exponential(3, initial=0.4))
async def rescheduled(scope: Scope, stopping: StopToken, n: int) -> None:
    """Fails its first attempt; the 0.4 s backoff is over a 0.5 s lease's half: rescheduled."""
    if scope.attempt == 1:
        raise ValueError("first attempt fails")
    RAN.append((n, scope.item.deliveries, scope.attempt))


@task(name="tests.redis.stuck_first")
async def stuck_first(scope: Scope, stopping: StopToken, n: int) -> None:
    """Hangs on its first delivery (until cancelled), records on the next ones."""
    if scope.item.deliveries == 1:
        await anyio.sleep_forever()
    RAN.append((n, scope.item.deliveries, scope.attempt))


@task(name="tests.redis.mark_slow_first")
def mark_slow_first(
    scope: Scope, stopping: StopToken, port: int, queue: str, n: int, seconds: float
) -> None:
    """`mark`, taking *seconds* on the first delivery only (its process is killed)."""
    mark.func(scope, stopping, port, queue, n, seconds if scope.item.deliveries == 1 else 0.0)
