"""Errors raised by workpool.

The tree is flat, with one base class::

    WorkpoolError(Exception)
    ├── QueueFullError     the channel is full and its mode said not to wait
    ├── PoolClosedError    intake is closed: the pool is shutting down or shut down
    ├── SettingsError      a setting (environment, .env or TOML) has a bad value;
    │                      also a ValueError
    └── ChannelUnavailableError
                           a durable channel's store (SQLite file, Redis) could not
                           be reached within its ``outage_timeout``

``QueueFullError`` is raised by ``enqueue`` in ``REJECT`` mode, by ``enqueue_nowait``
in ``WAIT`` mode, and by ``enqueue`` in ``WAIT`` mode once ``enqueue_timeout`` runs
out. ``PoolClosedError`` is "your code closed this": enqueueing after shutdown began,
or dequeueing from a closed, empty channel. ``ChannelUnavailableError`` is "something
outside broke it": the item was not accepted, and enqueueing it again later is safe
unless the store confirmed it meanwhile (use ``key=`` to make that harmless).
"""

from __future__ import annotations

__all__ = [
    "ChannelUnavailableError",
    "PoolClosedError",
    "QueueFullError",
    "SettingsError",
    "WorkpoolError",
]


class WorkpoolError(Exception):
    """Base class of every error workpool raises on purpose."""


class QueueFullError(WorkpoolError):
    """The channel is full and its full mode (or timeout) says not to wait."""


class PoolClosedError(WorkpoolError):
    """Intake is closed: the pool or channel was shut down."""


class SettingsError(WorkpoolError, ValueError):
    """A setting has a bad value; the message names the environment variable."""


class ChannelUnavailableError(WorkpoolError):
    """A durable channel's store could not be reached within its ``outage_timeout``."""
