"""`open_channel`: the channel a URL names, for settings and the command line.

The URL is checked by `parse_channel_url` (`_open`, which the channels themselves
use to mask passwords); the channel modules are imported only for the scheme used,
so ``memory:`` and ``sqlite:`` need no Redis client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._open import ChannelURL, channel_options, parse_channel_url

if TYPE_CHECKING:
    from ._seam import Channel

__all__ = ["build_channel", "open_channel"]


def open_channel(url: str, **options: Any) -> Channel:
    """A channel for *url*; its options from the query string and *options*.

    ::

        open_channel("memory:")                          # BackgroundWorker()
        open_channel("sqlite:///jobs.db", lease=60)      # relative to the working directory
        open_channel("sqlite:////var/lib/app/jobs.db")   # absolute
        open_channel("redis://:secret@cache:6379/0?queue=mail&max_deliveries=3")

    Memory takes ``capacity``, ``full_mode`` and ``enqueue_timeout``; SQLite and Redis
    take ``queue``, ``capacity``, ``full_mode`` (``wait`` or ``reject``), ``lease``,
    ``max_deliveries``, ``outage_timeout`` and ``max_message_bytes``, SQLite also
    ``synchronous``. A Redis URL keeps the client's own parameters (``db``,
    ``ssl_cert_reqs``...). Nothing is connected until the channel is used.

    Raises:
        ValueError: an unsupported scheme, a malformed URL, an unknown or bad option,
            or an option given both in the URL and as a keyword with two values; the
            message shows the URL with its password masked.
        ImportError: ``redis://`` without the ``workpool[redis]`` extra.
    """
    parsed = parse_channel_url(url)
    merged = channel_options(parsed, options, "open_channel")
    return build_channel(parsed, merged)


def build_channel(parsed: ChannelURL, options: dict[str, Any]) -> Channel:
    """The channel *parsed* names, with *options* (already checked)."""
    if parsed.scheme == "memory":
        from ._channel import BackgroundWorker

        return BackgroundWorker(**options)
    if parsed.scheme == "sqlite":
        from ._sqlite import SqliteChannel

        return SqliteChannel(parsed.target, **options)
    try:
        from .redis import RedisChannel
    except ImportError as exc:
        if exc.name is not None and exc.name.startswith("workpool"):
            raise
        raise ImportError(
            f"{parsed.shown!r} needs the Redis client: pip install 'workpool[redis]' ({exc})"
        ) from None
    return RedisChannel(parsed.target, **options)
