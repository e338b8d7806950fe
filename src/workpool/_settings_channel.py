"""The channel part of `PoolSettings`: ``WORKPOOL_CHANNEL``, ``WORKPOOL_TASKS``, and
the durable channel's ``WORKPOOL_QUEUE``, ``WORKPOOL_LEASE`` and ``WORKPOOL_MAX_DELIVERIES``.

The URL is checked when the settings are read (`parse_channel_url`), so a bad one is
a `SettingsError` naming ``WORKPOOL_CHANNEL`` before anything opens; the channel
itself is built by `WorkerPool.from_settings` (`channel_arguments`). A setting that
does not apply to the channel named (``WORKPOOL_LEASE`` with ``memory:``) or that
contradicts the URL's own option is an error too, never ignored.
"""

# No ``from __future__ import annotations``: pydantic evaluates these annotations.

from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from ._exceptions import SettingsError
from ._full import FullMode
from ._open import ChannelURL, mask_url, parse_channel_url
from ._open_channel import build_channel
from ._task import tasks_from_env

if TYPE_CHECKING:
    from ._seam import Channel

__all__ = ["ChannelSettings", "channel_arguments"]

#: Settings applied to the channel, by option name; ``capacity`` and ``full_mode``
#: reach a durable channel only when set explicitly (its default is unbounded).
_DURABLE_ONLY: Final = ("queue", "lease", "max_deliveries")
_POOL_CHANNEL: Final = ("capacity", "full_mode", "enqueue_timeout")


def _variable(name: str) -> str:
    return f"WORKPOOL_{name.upper()}"


class ChannelSettings(BaseSettings):
    """The channel settings (the base of `PoolSettings`, which reads them).

    Attributes:
        channel: the channel URL, see `open_channel` (``WORKPOOL_CHANNEL``; default
            ``memory:``, the in-process channel).
        tasks: modules whose tasks the pool runs, comma-separated in
            ``WORKPOOL_TASKS`` (``myapp.jobs,myapp.billing``).
        queue: the durable channel's queue name (``WORKPOOL_QUEUE``; the channel's
            default ``"default"`` when unset).
        lease: seconds a durable claim lasts before another consumer may take the
            item (``WORKPOOL_LEASE``; channel default 30).
        max_deliveries: deliveries without an outcome before the item is
            dead-lettered (``WORKPOOL_MAX_DELIVERIES``; channel default 5).
    """

    channel: str = "memory:"
    tasks: Annotated[tuple[str, ...], NoDecode] = ()
    queue: str | None = Field(default=None, min_length=1)
    lease: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_deliveries: int | None = Field(default=None, ge=1)

    @field_validator("channel", mode="before")
    @classmethod
    def _check_channel(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return "memory:"
            parse_channel_url(value)  # ValueError -> names WORKPOOL_CHANNEL
        return value

    @field_validator("tasks", mode="before")
    @classmethod
    def _split_tasks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(tasks_from_env(value))
        return value

    @field_validator("queue", "lease", "max_deliveries", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "channel" else value

    @property
    def channel_url(self) -> ChannelURL:
        """The checked `channel` URL."""
        return parse_channel_url(self.channel)

    def check_channel_options(self) -> None:
        """`SettingsError` for a setting that does not fit the channel named.

        Called once the values are valid one by one, by `PoolSettings`.
        """
        try:
            channel_arguments(self)
        except ValueError as exc:
            raise SettingsError(f"invalid workpool settings (1 error(s)):\n  {exc}") from None


def channel_arguments(settings: Any, *, build: bool = False) -> dict[str, Any]:
    """`WorkerPool` arguments for the channel *settings* name.

    For ``memory:``: ``capacity``, ``full_mode`` and ``enqueue_timeout`` (the URL's
    own, else the settings'). For a durable URL: ``channel``, built when *build*
    (else ``None``: checks only), with the queue, lease, max deliveries, and the
    capacity and full mode when set explicitly.

    Raises:
        ValueError: naming the variable of a setting that does not apply, conflicts
            with the URL, or is out of range for the channel.
    """
    parsed = settings.channel_url
    explicit = settings.model_fields_set
    if not parsed.durable:
        for name in _DURABLE_ONLY:
            if getattr(settings, name) is not None:
                raise ValueError(
                    f"{_variable(name)}: applies to a durable channel, but WORKPOOL_CHANNEL "
                    f"is {parsed.shown!r}; set WORKPOOL_CHANNEL=sqlite:///... or unset "
                    f"{_variable(name)}"
                )
        arguments = {name: getattr(settings, name) for name in _POOL_CHANNEL}
        for name, value in parsed.options.items():
            if name in explicit and arguments[name] != value:
                raise ValueError(_conflict(name, arguments[name], value, parsed))
            arguments[name] = value
        return arguments
    options = {name: getattr(settings, name) for name in _DURABLE_ONLY}
    if "enqueue_timeout" in explicit and settings.enqueue_timeout is not None:
        raise ValueError(
            f"WORKPOOL_ENQUEUE_TIMEOUT: applies to the in-memory channel; a durable channel "
            f"({parsed.shown!r}) waits for the store up to its outage_timeout"
        )
    for name in ("capacity", "full_mode"):
        if name in explicit:
            options[name] = getattr(settings, name)
    checked = dict(parsed.options)
    for name, value in options.items():
        if value is None:
            continue
        try:
            value = parsed_option(parsed, name, value)
        except ValueError as exc:
            raise ValueError(f"{_variable(name)}: {exc}") from None
        if name in checked and checked[name] != value:
            raise ValueError(_conflict(name, value, checked[name], parsed))
        checked[name] = value
    channel: Channel | None = build_channel(parsed, checked) if build else None
    return {"channel": channel}


def parsed_option(parsed: ChannelURL, name: str, value: object) -> object:
    """*value* checked as option *name* of *parsed*'s channel."""
    from ._open import OPTIONS

    if isinstance(value, FullMode):
        value = value.value
    result: object = OPTIONS[parsed.scheme][name](name, value)
    return result


def _shown(value: object) -> object:
    return value.value if isinstance(value, FullMode) else value


def _conflict(name: str, setting: object, in_url: object, parsed: ChannelURL) -> str:
    return (
        f"{_variable(name)}={_shown(setting)!r} conflicts with {name}={_shown(in_url)!r} in "
        f"WORKPOOL_CHANNEL {parsed.shown!r}; set it in one place"
    )
