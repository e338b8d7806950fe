"""A pool collected without ever starting: its queued items never ran; say so.

Nothing leaves the pool silently: items enqueued into a pool that is then dropped
without ``async with pool`` (or ``shutdown()``, which reports them as abandoned)
would vanish with it. A `weakref.finalize` on the pool warns when it is collected
(or at interpreter exit): a ``ResourceWarning``, as unclosed resources do, and an
ERROR log record, which is seen where warnings are filtered out. Nothing is said
for a pool that started, or whose channel is empty or durable (its items wait in
their store).
"""

from __future__ import annotations

import warnings
import weakref
from typing import TYPE_CHECKING

from ._log import logger

if TYPE_CHECKING:
    from ._seam import Channel
    from ._state import PoolState

__all__ = ["watch_unstarted"]


def watch_unstarted(pool: object, state: PoolState, channel: Channel) -> None:
    """Warn if *pool* is collected unstarted with items queued in *channel*."""
    weakref.finalize(pool, _collected, state, channel)


def _collected(state: PoolState, channel: Channel) -> None:
    if state.started or state.report is not None or channel.durable:
        return
    try:
        queued = channel.qsize()
    except Exception:  # a channel that cannot tell: nothing to report
        return
    if not queued:
        return
    message = (
        f"a WorkerPool was garbage-collected without ever starting: {queued} queued "
        f"item{'' if queued == 1 else 's'} never ran. Run the pool ('async with pool:') "
        "to run them, or 'await pool.shutdown()' to report them as abandoned"
    )
    # The log first: under a warnings filter of "error" the warning raises.
    logger.error(message, extra={"never_ran": queued})
    warnings.warn(message, ResourceWarning, stacklevel=2)
