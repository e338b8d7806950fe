"""The tasks of the durable fault tests: run by worker processes, enqueued by the tests.

Every run is recorded as a line ``<event> <item id> <deliveries> <pid> <n>`` in a
file of its own process under the directory named by ``DURABLE_RUNS`` (written
with one ``os.write`` on an ``O_APPEND`` descriptor: a line is in the file once
the call returns, whatever happens to the process afterwards). Names are pinned,
so the test process (which imports this as ``tests.durable.tasks``) and the
workers agree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

import anyio

from workpool import task

if TYPE_CHECKING:
    from workpool import Scope, StopToken

RUNS_ENV = "DURABLE_RUNS"

_fd: int | None = None


def record(event: str, scope: Scope, n: int) -> None:
    """Append one line for *event* of the item running in *scope*."""
    global _fd
    if _fd is None:
        path = Path(os.environ[RUNS_ENV]) / f"{os.getpid()}.log"
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    item = scope.item
    os.write(_fd, f"{event} {item.id} {item.deliveries} {os.getpid()} {n}\n".encode())


class Run(NamedTuple):
    """One recorded line."""

    event: str
    id: UUID
    deliveries: int
    pid: int
    n: int


def read_runs(directory: Path) -> list[Run]:
    """Every line recorded under *directory* so far (a torn last line is skipped)."""
    runs: list[Run] = []
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                event, id_, deliveries, pid, n = parts
                runs.append(Run(event, UUID(id_), int(deliveries), int(pid), int(n)))
    return runs


@task(name="durable.noop")
async def noop(scope: Scope, stopping: StopToken, n: int) -> None:
    """Record a start and a finish."""
    record("start", scope, n)
    record("done", scope, n)


@task(name="durable.block_first")
async def block_first(scope: Scope, stopping: StopToken, n: int) -> None:
    """On its first delivery, block until cancelled (killed, or released at the
    deadline); on a later one, finish at once."""
    record("start", scope, n)
    if scope.item.deliveries == 1:
        await anyio.sleep_forever()
    record("done", scope, n)


@task(name="durable.exit")
async def exit_process(scope: Scope, stopping: StopToken, n: int) -> None:
    """Kill the process that runs it, as a segfault or the OOM killer would."""
    record("start", scope, n)
    os._exit(17)


@task(name="durable.slow")
async def slow(scope: Scope, stopping: StopToken, n: int, seconds: float) -> None:
    """Take *seconds* (longer than the lease, in the lease test)."""
    record("start", scope, n)
    await anyio.sleep(seconds)
    record("done", scope, n)


@task(name="durable.typed")
async def typed(scope: Scope, stopping: StopToken, n: int) -> None:
    """Takes an int: the tests enqueue a string under this name from another signature."""
    record("start", scope, n)
    record("done", scope, n)
