"""The counters and lifecycle flags a pool's parts share.

The pool (lifecycle, consumer loop, `stats()`), the item runner and the drain all
read and write these. They live in one small object whose fields are public to
all three, as anyio's memory streams share their ``_MemoryObjectStreamState``,
so that no part reaches into another's private attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._stats import Timings

if TYPE_CHECKING:
    import anyio

    from ._item import WorkItem
    from ._stats import DrainReport

__all__ = ["PoolState"]


@dataclass(slots=True, eq=False)
class PoolState:
    """One pool's shared counters (lifetime totals) and lifecycle flags.

    Attributes:
        in_flight: the item each consumer runs now (``None`` when idle); the loop
            watchdog reads it from its thread, and ``stats().busy`` counts it.
    """

    in_flight: list[WorkItem | None]

    # counters
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    timed_out: int = 0
    delivered: int = 0
    redelivered: int = 0
    rescheduled: int = 0
    cancelled: list[WorkItem] = field(default_factory=list)
    abandoned: list[WorkItem] = field(default_factory=list)
    released: list[WorkItem] = field(default_factory=list)
    wait_times: Timings = field(default_factory=Timings)
    run_times: Timings = field(default_factory=Timings)

    # lifecycle; the anyio objects are made once a loop runs
    started: bool = False
    running: bool = False
    live_consumers: int = 0
    consumers_done: anyio.Event | None = None
    consumer_scope: anyio.CancelScope | None = None
    """Cancelled at the shutdown deadline: the consumers and what they run."""
    channel_scope: anyio.CancelScope | None = None
    """Around the channel's ``run()``; cancelled once the consumers have stopped."""
    channel_stopped: anyio.Event | None = None
    report: DrainReport | None = None
