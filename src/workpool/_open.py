"""Channel URLs: checked here (passwords masked by `_urls.mask_url`); `_open_channel` opens them.

``memory:`` is the in-memory `BackgroundWorker`; ``sqlite:///rel.db`` (relative to
the working directory) and ``sqlite:////abs/path.db`` (absolute) a `SqliteChannel`;
``redis://`` and ``rediss://`` (TLS) a ``workpool.redis.RedisChannel``. The query
string carries the channel's options (``?queue=mail&lease=60``), checked and
converted here, so a typo fails before anything opens. Errors name the URL with
its password masked: a URL is logged and printed only as `mask_url` shows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ._full import FullMode, parse_full_mode
from ._urls import mask_url

__all__ = ["OPTIONS", "ChannelURL", "channel_options", "mask_url", "parse_channel_url"]


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _count(name: str, value: object) -> int:
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


def _zero_or_more(name: str, value: object) -> int:
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"{name} must be a whole number of at least 0, got {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of at least 0, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be more than 0 seconds, got {value!r}")
    return float(number)


def _full_mode(name: str, value: object) -> FullMode:
    if not isinstance(value, str | FullMode):
        raise ValueError(f"{name} must be a full mode name, got {value!r}")
    return parse_full_mode(value, name)


def _durable_full_mode(name: str, value: object) -> FullMode:
    mode = _full_mode(name, value)
    if mode not in (FullMode.WAIT, FullMode.REJECT):
        raise ValueError(
            f"{name} of a durable channel must be 'wait' or 'reject', got {mode.value!r} "
            "(a durable channel never drops an accepted item)"
        )
    return mode


def _synchronous(name: str, value: object) -> str:
    choices = ("off", "normal", "full", "extra")
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value.lower()


Check = Callable[[str, object], Any]

_DURABLE: Final[dict[str, Check]] = {
    "queue": _text,
    "capacity": _count,
    "full_mode": _durable_full_mode,
    "lease": _seconds,
    "max_deliveries": _count,
    "outage_timeout": _seconds,
    "max_message_bytes": _count,
}
#: The options each scheme takes (in the query string or as keywords), with their checks.
OPTIONS: Final[Mapping[str, Mapping[str, Check]]] = {
    "memory": {"capacity": _count, "full_mode": _full_mode, "enqueue_timeout": _seconds},
    "sqlite": {**_DURABLE, "synchronous": _synchronous, "prefetch": _zero_or_more},
    "redis": _DURABLE,
}
# Connection parameters the Redis client reads from the URL itself: left in it.
_REDIS_CLIENT_PARAMS: Final = frozenset(
    {
        "db",
        "username",
        "password",
        "protocol_version",
        "client_name",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "max_connections",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)
_HINT: Final = "use memory:, sqlite:///relative.db, sqlite:////absolute.db or redis://host:6379/0"


@dataclass(frozen=True)
class ChannelURL:
    """A checked channel URL.

    Attributes:
        scheme: ``"memory"``, ``"sqlite"`` or ``"redis"`` (``rediss`` included).
        target: the database path (SQLite) or the client URL without workpool's
            options (Redis); empty for memory.
        options: the channel's options from the query string, converted.
        shown: the URL as it may be logged (password masked).
    """

    scheme: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)
    shown: str = ""

    @property
    def durable(self) -> bool:
        """Whether the channel keeps its items outside the process."""
        return self.scheme != "memory"


def parse_channel_url(url: str) -> ChannelURL:
    """Check *url* and convert its options, without opening anything.

    Raises:
        ValueError: an unknown scheme, a malformed location, or an unknown, repeated
            or bad option; the message shows the URL with its password masked.
    """
    if not isinstance(url, str):
        raise TypeError(f"a channel URL must be a string, got {type(url).__name__}")
    shown = mask_url(url)
    scheme, colon, _ = url.partition(":")
    scheme = scheme.strip().lower()
    if not colon or scheme not in ("memory", "sqlite", "redis", "rediss"):
        raise ValueError(f"unsupported channel URL {shown!r}: {_HINT}")
    parts = urlsplit(url.strip())
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"channel URL {shown!r}: malformed query string") from None
    if parts.fragment:
        raise ValueError(f"channel URL {shown!r}: a fragment (#...) means nothing here")
    kind = "redis" if scheme == "rediss" else scheme
    known = OPTIONS[kind]
    options: dict[str, Any] = {}
    passed: list[tuple[str, str]] = []
    for key, value in pairs:
        if key in options or any(key == k for k, _ in passed):
            raise ValueError(f"channel URL {shown!r}: option {key!r} is given twice")
        if key in known:
            try:
                options[key] = known[key](key, value)
            except ValueError as exc:
                raise ValueError(f"channel URL {shown!r}: {exc}") from None
        elif kind == "redis" and key in _REDIS_CLIENT_PARAMS:
            passed.append((key, value))
        else:
            raise ValueError(
                f"channel URL {shown!r}: unknown option {key!r}; {kind} channels take "
                f"{', '.join(known)}"
            )
    if kind == "memory":
        if parts.netloc or parts.path.strip("/"):
            raise ValueError(f"channel URL {shown!r}: memory: takes no location; {_HINT}")
        return ChannelURL("memory", "", options, shown)
    if kind == "sqlite":
        return ChannelURL(
            "sqlite", _sqlite_path(url, parts.netloc, parts.path, shown), options, shown
        )
    if not parts.netloc or not parts.hostname:
        raise ValueError(f"channel URL {shown!r}: no host; e.g. redis://127.0.0.1:6379/0")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"channel URL {shown!r}: the port is not a number") from None
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(passed), ""))
    return ChannelURL("redis", target, options, shown)


def _sqlite_path(url: str, netloc: str, path: str, shown: str) -> str:
    if not url.partition(":")[2].startswith("///") or netloc:
        raise ValueError(
            f"channel URL {shown!r}: an SQLite URL has three slashes before a relative "
            "path (sqlite:///jobs.db) and four before an absolute one (sqlite:////var/jobs.db)"
        )
    relative = unquote(path[1:])
    if not relative or relative.endswith("/"):
        raise ValueError(f"channel URL {shown!r}: no database file named")
    if relative == ":memory:":
        raise ValueError(
            f"channel URL {shown!r}: an in-memory SQLite database is not shared or kept; "
            "use memory: for an in-process channel"
        )
    return relative


def channel_options(parsed: ChannelURL, options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """*parsed*'s options with *options* added, each checked; `ValueError` on a conflict.

    Args:
        source: what gave *options*, for messages (``"open_channel"``, ``"settings"``).
    """
    known = OPTIONS[parsed.scheme]
    merged = dict(parsed.options)
    for key, value in options.items():
        if value is None:
            continue
        if key not in known:
            raise ValueError(
                f"{source}: option {key!r} does not apply to {parsed.shown!r}; "
                f"{parsed.scheme} channels take {', '.join(known)}"
            )
        checked = known[key](key, value)
        if key in merged and merged[key] != checked:
            raise ValueError(
                f"{source}: {key}={checked!r} conflicts with {key}={merged[key]!r} in the "
                f"URL {parsed.shown!r}; give it once"
            )
        merged[key] = checked
    return merged
