"""The demo's jobs as named tasks, for its run on a durable channel.

Each task sleeps (or, ``sync``, blocks a worker thread) for the time it was given,
fails at random with the rate it was given, and on success appends its item number
to the batch's journal: a line per run, so an item that ran twice (it was running
when its process was killed) shows up twice.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import anyio

from ._retry import RetryPolicy
from ._task import task

if TYPE_CHECKING:
    from ._scope import Scope
    from ._stop import StopToken

__all__ = ["flaky", "quick", "slow", "sync"]

_RETRY = RetryPolicy.exponential(3, initial=0.05, maximum=0.5, jitter=0.02)


class SimulatedFailure(Exception):
    """What a job raises when the dice say it fails this attempt."""


def _finish(scope: Scope, n: int, failure_rate: float, journal: str) -> None:
    if random.random() < failure_rate:
        raise SimulatedFailure(f"item {n} failed on attempt {scope.attempt}")
    with open(journal, "a", encoding="utf-8") as file:
        file.write(f"{n}\n")


@task(name="workpool.demo.quick", retry=_RETRY)
async def quick(
    scope: Scope, stopping: StopToken, n: int, seconds: float, failure_rate: float, journal: str
) -> None:
    """A short job."""
    await anyio.sleep(seconds)
    _finish(scope, n, failure_rate, journal)


@task(name="workpool.demo.flaky", retry=_RETRY)
async def flaky(
    scope: Scope, stopping: StopToken, n: int, seconds: float, failure_rate: float, journal: str
) -> None:
    """A short job that fails four times as often."""
    await anyio.sleep(seconds)
    _finish(scope, n, min(0.95, failure_rate * 4), journal)


@task(name="workpool.demo.slow", retry=_RETRY)
async def slow(
    scope: Scope, stopping: StopToken, n: int, seconds: float, failure_rate: float, journal: str
) -> None:
    """A long job that finishes early, cleanly, when shutdown begins."""
    with anyio.move_on_after(seconds):
        await stopping.wait()
    _finish(scope, n, failure_rate, journal)


@task(name="workpool.demo.sync", retry=_RETRY)
def sync(
    scope: Scope, stopping: StopToken, n: int, seconds: float, failure_rate: float, journal: str
) -> None:
    """A blocking job: it runs in a worker thread."""
    time.sleep(seconds)
    _finish(scope, n, failure_rate, journal)
