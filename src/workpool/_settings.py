"""Pool settings from arguments, the environment, a ``.env`` file and a TOML file.

`PoolSettings` reads, highest priority first:

1. keyword arguments (``PoolSettings(consumers=8)``);
2. environment variables ``WORKPOOL_*`` (nested with ``__``: ``WORKPOOL_RETRY__ATTEMPTS``);
3. a ``.env`` file in the working directory;
4. the TOML file named by ``WORKPOOL_CONFIG_FILE`` (or ``config_file=``), with
   top-level keys and ``[retry]`` / ``[session]`` tables.

Every bad value raises `SettingsError` naming where it came from (the environment
variable, the ``.env`` file, or the config file and its key), and every problem is
listed at once, so an operator fixes them in one go. A ``WORKPOOL_*`` variable that
is not a setting (a typo such as ``WORKPOOL_CONSUMER``) warns with the closest
known name instead of being ignored silently.
"""

# No ``from __future__ import annotations``: pydantic evaluates these annotations at
# runtime, and ruff then knows the imports they use are runtime imports.

import difflib
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pydantic_settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._channel import FullMode, parse_full_mode
from ._exceptions import SettingsError
from ._retry import RetryPolicy
from ._settings_channel import ChannelSettings

__all__ = ["PoolSettings", "RetrySettings", "SessionSettings"]

ENV_PREFIX = "WORKPOOL_"
NESTED_DELIMITER = "__"
CONFIG_FILE_VAR = f"{ENV_PREFIX}CONFIG_FILE"


class RetrySettings(BaseModel):
    """The pool's default retry policy: exponential backoff, off by default.

    Attributes:
        attempts: total attempts per item, at least 1; 1 means no retry.
        backoff_initial: seconds to wait before the first retry.
        backoff_max: the longest wait between two attempts, in seconds.
        multiplier: how much each wait grows over the previous one (at least 1).
        jitter: up to this many random seconds added to each wait.
    """

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, ge=1)
    backoff_initial: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    backoff_max: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    multiplier: float = Field(default=2.0, ge=1, allow_inf_nan=False)
    jitter: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    def policy(self) -> RetryPolicy | None:
        """The `RetryPolicy` these settings describe.

        Returns:
            ``None`` when ``attempts`` is 1 (no retry), else an exponential policy.
        """
        if self.attempts == 1:
            return None
        return RetryPolicy.exponential(
            self.attempts,
            initial=self.backoff_initial,
            maximum=self.backoff_max,
            multiplier=self.multiplier,
            jitter=self.jitter,
        )


class SessionSettings(BaseModel):
    """Settings of the pool's default `SessionManager`.

    Attributes:
        default_duration: seconds a session lives after it was last accessed,
            when it was created without a duration of its own.
        cleanup_interval: seconds between two sweeps of expired sessions.
    """

    model_config = ConfigDict(extra="forbid")

    default_duration: float = Field(default=900.0, gt=0, allow_inf_nan=False)
    cleanup_interval: float = Field(default=60.0, gt=0, allow_inf_nan=False)


@dataclass
class _Reading:
    """What the sources of one `PoolSettings` build gave, to say where a bad value came from.

    pydantic reports a bad value by its field path only; the sources' own data tells
    which of them supplied it (the highest one that has the path).
    """

    init: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    dotenv: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    file_data: dict[str, Any] = field(default_factory=dict)
    unknown_file_keys: list[str] = field(default_factory=list)
    env_names: list[str] = field(default_factory=list)
    dotenv_names: list[str] = field(default_factory=list)


# Set by PoolSettings.__init__ for the duration of one build: sources are built and
# called by pydantic-settings, and have no other way back to the instance being built.
_reading: ContextVar[_Reading | None] = ContextVar("workpool_settings_reading", default=None)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The TOML file named by ``config_file``, as set by the sources above this one.

    pydantic-settings' `TomlConfigSettingsSource` takes its path when it is built,
    before the environment is read, and skips a missing file silently; this source
    finds the path in the state the higher sources have gathered, and insists the
    file exists. Being the last source, it also records what every source gave.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        env: PydanticBaseSettingsSource | None = None,
        dotenv: PydanticBaseSettingsSource | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self._env = env
        self._dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads the whole file at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        reading = _reading.get()
        if reading is not None:
            self._record(reading)
        named = self.current_state.get("config_file")
        if named is None or (isinstance(named, str) and not named.strip()):
            return {}
        if not isinstance(named, str | Path):
            return {}  # not a path: validation reports it, naming the variable
        path = Path(named).expanduser()
        if not path.is_file():
            problem = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise SettingsError(
                f"{CONFIG_FILE_VAR} names the config file {str(path)!r}, which {problem}; "
                f"fix the path or unset {CONFIG_FILE_VAR}"
            )
        try:
            data = TomlConfigSettingsSource(self.settings_cls, toml_file=path)()
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"cannot read the config file {str(path)!r} (named by {CONFIG_FILE_VAR}): {exc}"
            ) from exc
        # A typo in a file someone named on purpose should not be silently ignored; it
        # is reported with the bad values, so one run lists every problem. A config
        # file naming another config file is not supported.
        allowed = _file_keys(self.settings_cls)
        unknown = sorted(set(data) - allowed)
        if reading is not None:
            reading.file = path
            reading.file_data = data
            reading.unknown_file_keys = unknown
        elif unknown:
            raise SettingsError(_unknown_keys_line(path, unknown, allowed))
        return {key: value for key, value in data.items() if key in allowed}

    def _record(self, reading: _Reading) -> None:
        sources = self.settings_sources_data
        reading.init = sources.get("InitSettingsSource", {})
        reading.env = sources.get("EnvSettingsSource", {})
        reading.dotenv = sources.get("DotEnvSettingsSource", {})
        if isinstance(self._env, EnvSettingsSource):
            reading.env_names = list(self._env.env_vars)
        if isinstance(self._dotenv, DotEnvSettingsSource):
            reading.dotenv_names = list(self._dotenv.env_vars)


class PoolSettings(ChannelSettings):
    """Settings for `WorkerPool.from_settings`, from arguments, environment and files.

    Sources, highest priority first: keyword arguments, ``WORKPOOL_*`` environment
    variables, a ``.env`` file in the working directory, then the TOML file named by
    ``WORKPOOL_CONFIG_FILE`` (top-level keys, ``[retry]`` and ``[session]`` tables).
    Nested settings use ``__`` in variable names: ``WORKPOOL_RETRY__ATTEMPTS=3``. An
    empty ``WORKPOOL_ENQUEUE_TIMEOUT`` or ``WORKPOOL_TASK_TIMEOUT`` means no timeout.

    Attributes:
        consumers: number of concurrent consumers (``WORKPOOL_CONSUMERS``).
        capacity: how many items the channel holds (``WORKPOOL_CAPACITY``).
        full_mode: what ``enqueue`` does when the channel is full, any case
            (``WORKPOOL_FULL_MODE``).
        enqueue_timeout: seconds ``enqueue`` waits for room in ``WAIT`` mode; ``None``
            waits as long as it takes (``WORKPOOL_ENQUEUE_TIMEOUT``).
        shutdown_deadline: seconds shutdown waits for queued and running items
            (``WORKPOOL_SHUTDOWN_DEADLINE``).
        task_timeout: seconds each attempt may run; ``None`` for no limit
            (``WORKPOOL_TASK_TIMEOUT``).
        thread_limit: most worker threads running sync work at once
            (``WORKPOOL_THREAD_LIMIT``).
        blocked_loop_threshold: seconds the event loop may be blocked by a work item
            before a warning names it; ``None`` (empty) turns the watchdog off
            (``WORKPOOL_BLOCKED_LOOP_THRESHOLD``).
        retry: the default retry policy (``WORKPOOL_RETRY__*``).
        session: the session manager's settings (``WORKPOOL_SESSION__*``).
        config_file: the TOML file read last (``WORKPOOL_CONFIG_FILE``).
        channel, tasks, queue, lease, max_deliveries: the channel and the tasks it
            runs (``WORKPOOL_CHANNEL``, ``WORKPOOL_TASKS``...), see `ChannelSettings`.

    Raises:
        SettingsError: a value is bad (the message names its environment variable),
            or the named config file is missing or unreadable.
    """

    model_config: ClassVar[SettingsConfigDict] = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    consumers: int = Field(default=4, ge=1)
    capacity: int = Field(default=1000, ge=1)
    full_mode: FullMode = FullMode.WAIT
    enqueue_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    shutdown_deadline: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    task_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    thread_limit: int = Field(default=40, ge=1)
    blocked_loop_threshold: float | None = Field(default=1.0, gt=0, allow_inf_nan=False)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    config_file: Path | None = None

    def __init__(self, **values: Any) -> None:
        reading = _Reading()
        token = _reading.set(reading)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            _warn_unknown_names(type(self), reading)
            # pydantic's own message shows the input: a channel URL's password with it.
            secret = any(error["loc"][:1] == ("channel",) for error in exc.errors())
            raise SettingsError(_describe(exc, reading, type(self))) from (None if secret else exc)
        except pydantic_settings.SettingsError as exc:
            # e.g. WORKPOOL_RETRY='not json': the source fails before validation.
            found = re.search(r'field "(\w+)"', str(exc))
            if found is None:
                raise SettingsError(f"invalid workpool settings: {exc}") from exc
            variable = _env_var_name((found[1],))
            raise SettingsError(
                f"invalid workpool settings:\n  {variable} ({found[1]}): {exc}; set its fields "
                f"one by one ({variable}{NESTED_DELIMITER}<FIELD>=...) or give a JSON object"
            ) from exc
        finally:
            _reading.reset(token)
        _warn_unknown_names(type(self), reading)
        if reading.unknown_file_keys and reading.file is not None:
            raise SettingsError(
                "invalid workpool settings (1 error(s)):\n  "
                + _unknown_keys_line(
                    reading.file, reading.unknown_file_keys, _file_keys(type(self))
                )
            )
        self.check_channel_options()

    @field_validator("full_mode", mode="before")
    @classmethod
    def _parse_full_mode(cls, value: object) -> object:
        if isinstance(value, str | FullMode):
            try:
                return parse_full_mode(value)
            except ValueError:
                pass  # the enum check below reports it, with the choices
        return value

    @field_validator(
        "enqueue_timeout", "task_timeout", "blocked_loop_threshold", "config_file", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # ``WORKPOOL_TASK_TIMEOUT=`` unsets a value that a lower source (TOML) set.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then ``.env``, then the config file."""
        config_file = _ConfigFileSource(settings_cls, env=env_settings, dotenv=dotenv_settings)
        return init_settings, env_settings, dotenv_settings, config_file


def _env_var_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the setting at *loc*, e.g. ``WORKPOOL_RETRY__ATTEMPTS``."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in loc)


def _file_keys(settings_cls: type[BaseSettings]) -> set[str]:
    """The top-level keys a config file may have (a file naming another is not supported)."""
    return set(settings_cls.model_fields) - {"config_file"}


def _closest(name: str, known: Iterable[str], prefix: str = "") -> str | None:
    """The known name most like *name*, if any is close; *prefix* is left out of the likeness."""
    by_rest = {candidate.removeprefix(prefix): candidate for candidate in known}
    found = difflib.get_close_matches(name.removeprefix(prefix), list(by_rest), n=1, cutoff=0.6)
    return by_rest[found[0]] if found else None


def _unknown_keys_line(path: Path, unknown: list[str], allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    hints = []
    for key in unknown:
        guess = _closest(key, allowed)
        hints.append(f"{key} (did you mean {guess}?)" if guess else key)
    return (
        f"config file {str(path)!r}: unknown top-level key(s) {', '.join(hints)}; "
        f"the keys are {', '.join(allowed)}"
    )


def _has(data: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    current: Any = data
    for part in loc:
        if not isinstance(current, Mapping) or part not in current:
            return False
        current = current[part]
    return True


def _origin(loc: tuple[int | str, ...], reading: _Reading) -> str:
    """Where the value at *loc* came from: the highest source that set it."""
    dotted = ".".join(map(str, loc))
    variable = _env_var_name(loc)
    if _has(reading.init, loc):
        return f"{variable} ({dotted}, an argument of PoolSettings)"
    if _has(reading.env, loc):
        return f"{variable} ({dotted})"
    if _has(reading.dotenv, loc):
        return f"{variable} ({dotted}, from the .env file)"
    if reading.file is not None and _has(reading.file_data, loc):
        return f"config file {str(reading.file)!r}, key {dotted}"
    return f"{variable} ({dotted})"


def _nested_fields(settings_cls: type[BaseSettings]) -> dict[str, list[str]]:
    """Names of the settings that are tables (``retry``), with their own fields."""
    nested = {}
    for name, info in settings_cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested[name] = list(annotation.model_fields)
    return nested


def _known_variables(settings_cls: type[BaseSettings]) -> list[str]:
    nested = _nested_fields(settings_cls)
    known = []
    for name in settings_cls.model_fields:
        known.append(_env_var_name((name,)))
        known.extend(_env_var_name((name, sub)) for sub in nested.get(name, ()))
    return known


def _warn_unknown_names(settings_cls: type[BaseSettings], reading: _Reading) -> None:
    """Warn about each ``WORKPOOL_*`` variable that is not a setting, with the closest one.

    Names under a table (``WORKPOOL_RETRY__ATEMPTS``) are not warned about here: the
    table forbids unknown fields, so validation reports them as errors.
    """
    known = _known_variables(settings_cls)
    known_upper = set(known)
    tables = {_env_var_name((name,)) + NESTED_DELIMITER for name in _nested_fields(settings_cls)}
    prefix = ENV_PREFIX.lower()
    for where, names in (("the environment", reading.env_names), (".env", reading.dotenv_names)):
        for name in sorted({n.upper() for n in names if n.lower().startswith(prefix)}):
            if name in known_upper or name.startswith(tuple(tables)):
                continue
            guess = _closest(name, known, ENV_PREFIX)
            hint = f"did you mean {guess}?" if guess else f"the settings are {', '.join(known)}"
            warnings.warn(
                f"{name} (in {where}) is not a workpool setting and is ignored; {hint}",
                UserWarning,
                stacklevel=3,
            )


def _describe(exc: ValidationError, reading: _Reading, settings_cls: type[BaseSettings]) -> str:
    lines = [_describe_error(error, reading, settings_cls) for error in exc.errors()]
    if reading.unknown_file_keys and reading.file is not None:
        lines.append(
            _unknown_keys_line(reading.file, reading.unknown_file_keys, _file_keys(settings_cls))
        )
    header = f"invalid workpool settings ({len(lines)} error(s)):"
    return "\n  ".join([header, *lines])


def _describe_error(
    error: ErrorDetails, reading: _Reading, settings_cls: type[BaseSettings]
) -> str:
    loc = error["loc"]
    message = error["msg"].removeprefix("Value error, ")
    where = _origin(loc, reading) if loc else "PoolSettings"
    if error["type"] == "extra_forbidden" and len(loc) == 2:
        # A misspelled field of a table (WORKPOOL_RETRY__ATEMPTS): name the right one.
        table, name = str(loc[0]), str(loc[1])
        guess = _closest(name, _nested_fields(settings_cls).get(table, ()))
        if guess is not None:
            from_file = where.startswith("config file")
            right = f"{table}.{guess}" if from_file else _env_var_name((table, guess))
            message = f"{message}; did you mean {right}?"
    elif loc[:1] == ("channel",):
        pass  # the message shows the URL, its password masked
    elif error["type"] != "missing" and not isinstance(error.get("input"), dict):
        message = f"{message}, got {error.get('input')!r}"
    return f"{where}: {message}"
