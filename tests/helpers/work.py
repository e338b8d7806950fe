"""Work functions the channel tests share: a no-op and labelled jobs."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workpool import Scope, StopToken, WorkItem


async def noop(scope: Scope, stopping: StopToken) -> None:
    """A work function that does nothing."""


async def job(label: str, scope: Scope, stopping: StopToken) -> None:
    """A work function told apart by *label* (bound with ``partial``)."""


def labelled(label: str) -> functools.partial[Any]:
    """A job bound to *label*."""
    return functools.partial(job, label)


def label_of(item: WorkItem) -> str:
    """The label of an item made from `labelled`."""
    work = item.work
    assert isinstance(work, functools.partial)
    return str(work.args[0])
