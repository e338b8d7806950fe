"""`open_channel` and the channel settings: URLs, options, errors, masked passwords."""

from __future__ import annotations

import os
import traceback
from typing import TYPE_CHECKING

import pytest

from workpool import (
    BackgroundWorker,
    FullMode,
    PoolSettings,
    SettingsError,
    SqliteChannel,
    WorkerPool,
    open_channel,
)

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "hunter2-secret"


def test_memory_is_a_background_worker() -> None:
    """memory: (the default) is the in-process channel, its options from the query."""
    assert isinstance(open_channel("memory:"), BackgroundWorker)
    channel = open_channel("memory:?capacity=5&full_mode=reject")
    assert isinstance(channel, BackgroundWorker)
    assert channel.capacity == 5
    assert channel.full_mode is FullMode.REJECT


@pytest.mark.anyio
async def test_sqlite_relative_and_absolute(tmp_path: Path) -> None:
    """Three slashes: a path relative to the working directory; four: an absolute one."""
    relative = open_channel("sqlite:///jobs.db")
    absolute = open_channel(f"sqlite:///{tmp_path}/abs.db")
    try:
        assert isinstance(relative, SqliteChannel)
        assert isinstance(absolute, SqliteChannel)
        assert os.path.abspath(relative.path) == os.path.join(os.getcwd(), "jobs.db")
        assert absolute.path == f"{tmp_path}/abs.db"
    finally:
        await relative.aclose()
        await absolute.aclose()


@pytest.mark.anyio
async def test_sqlite_options_from_query_and_keywords() -> None:
    """Query options are converted to their types; keywords add to them."""
    channel = open_channel(
        "sqlite:///jobs.db?queue=mail&lease=2.5&max_deliveries=3&capacity=10&full_mode=REJECT",
        synchronous="full",
    )
    try:
        assert isinstance(channel, SqliteChannel)
        assert (channel.queue, channel.lease, channel.max_deliveries) == ("mail", 2.5, 3)
        assert (channel.capacity, channel.full_mode) == (10, FullMode.REJECT)
    finally:
        await channel.aclose()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://host/x", "unsupported channel URL"),
        ("sqlite://jobs.db", "three slashes"),
        ("sqlite:///", "no database file"),
        ("sqlite:///:memory:", "use memory:"),
        ("sqlite:///jobs.db?lease=abc", "lease must be a number of seconds, got 'abc'"),
        ("sqlite:///jobs.db?lease=0", "lease must be more than 0 seconds"),
        ("sqlite:///jobs.db?lease=inf", "lease must be more than 0 seconds"),
        ("sqlite:///jobs.db?max_deliveries=0", "max_deliveries must be a whole number"),
        ("sqlite:///jobs.db?capacity=1.5", "capacity must be a whole number"),
        ("sqlite:///jobs.db?full_mode=drop_oldest", "must be 'wait' or 'reject'"),
        ("sqlite:///jobs.db?synchronous=sometimes", "synchronous must be one of"),
        ("sqlite:///jobs.db?leese=5", "unknown option 'leese'"),
        ("sqlite:///jobs.db?queue=a&queue=b", "'queue' is given twice"),
        ("sqlite:///jobs.db?queue=", "queue must be a non-empty string"),
        ("memory:?lease=5", "unknown option 'lease'"),
        ("memory://somewhere", "takes no location"),
        ("redis://", "no host"),
        ("redis://host:port/0", "the port is not a number"),
        ("redis://host/0?sharding=yes", "unknown option 'sharding'"),
    ],
)
def test_bad_urls_raise_value_error_naming_them(url: str, words: str) -> None:
    """An unknown scheme, a bad location or a bad option is a ValueError naming the URL."""
    with pytest.raises(ValueError, match="channel URL") as caught:
        open_channel(url)
    assert words in str(caught.value)


def test_keyword_conflicting_with_the_url_is_an_error() -> None:
    """An option given in the URL and as a keyword, with two values, is not guessed at."""
    with pytest.raises(ValueError, match=r"lease=3.0 conflicts with lease=2.0"):
        open_channel("sqlite:///jobs.db?lease=2", lease=3)
    with pytest.raises(ValueError, match="option 'lease' does not apply"):
        open_channel("memory:", lease=3)
    with pytest.raises(ValueError, match="lease must be more than 0"):
        open_channel("sqlite:///jobs.db", lease=-1)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:6379/0?lease=soon",
        f"rediss://user:{SECRET}@cache:port/0",
        f"ftp://user:{SECRET}@host/",
        f"redis://{SECRET}@cache:6379/0?nope=1",
        f"redis://cache:6379/0?password={SECRET}&nope=1",
    ],
)
def test_password_is_masked_in_errors(url: str) -> None:
    """Errors show the URL with its password replaced by ***; the password never appears."""
    with pytest.raises(ValueError, match=r"\*\*\*") as caught:
        open_channel(url)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_redis_url_opens_a_redis_channel() -> None:
    """redis:// opens a RedisChannel (no connection yet), its options from the query."""
    redis = pytest.importorskip("workpool.redis", reason="workpool.redis is not available")
    channel = open_channel("redis://127.0.0.1:6379/0?queue=mail&lease=4&max_deliveries=2")
    assert isinstance(channel, redis.RedisChannel)


# -- settings -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_from_settings_builds_the_durable_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKPOOL_CHANNEL, _QUEUE, _LEASE, _MAX_DELIVERIES and _TASKS make the pool's channel
    and tasks."""
    monkeypatch.setenv("WORKPOOL_CHANNEL", "sqlite:///jobs.db")
    monkeypatch.setenv("WORKPOOL_QUEUE", "mail")
    monkeypatch.setenv("WORKPOOL_LEASE", "7.5")
    monkeypatch.setenv("WORKPOOL_MAX_DELIVERIES", "2")
    monkeypatch.setenv("WORKPOOL_TASKS", "workpool._demo_tasks, workpool._demo_tasks")
    settings = PoolSettings()
    assert settings.tasks == ("workpool._demo_tasks", "workpool._demo_tasks")
    pool = WorkerPool.from_settings(settings)
    channel = pool.channel
    try:
        assert isinstance(channel, SqliteChannel)
        assert (channel.queue, channel.lease, channel.max_deliveries) == ("mail", 7.5, 2)
        assert channel.capacity is None  # WORKPOOL_CAPACITY's default bounds memory only
        assert "workpool.demo.quick" in pool.tasks
    finally:
        await channel.aclose()


def test_memory_url_options_reach_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """memory: with options builds the pool's own BackgroundWorker with them."""
    monkeypatch.setenv("WORKPOOL_CHANNEL", "memory:?capacity=7&full_mode=drop_oldest")
    pool = WorkerPool.from_settings()
    assert isinstance(pool.channel, BackgroundWorker)
    assert pool.channel.capacity == 7
    assert pool.channel.full_mode is FullMode.DROP_OLDEST


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"WORKPOOL_CHANNEL": "ftp://x"}, "WORKPOOL_CHANNEL (channel): unsupported channel URL"),
        ({"WORKPOOL_LEASE": "-1"}, "WORKPOOL_LEASE (lease)"),
        ({"WORKPOOL_MAX_DELIVERIES": "many"}, "WORKPOOL_MAX_DELIVERIES (max_deliveries)"),
        ({"WORKPOOL_TASKS": "my-app.jobs"}, "WORKPOOL_TASKS"),
        ({"WORKPOOL_LEASE": "5"}, "WORKPOOL_LEASE: applies to a durable channel"),
        ({"WORKPOOL_QUEUE": "mail"}, "WORKPOOL_QUEUE: applies to a durable channel"),
        (
            {"WORKPOOL_CHANNEL": "sqlite:///j.db?lease=2", "WORKPOOL_LEASE": "3"},
            "WORKPOOL_LEASE=3.0 conflicts with lease=2.0",
        ),
        (
            {"WORKPOOL_CHANNEL": "sqlite:///j.db", "WORKPOOL_FULL_MODE": "drop_newest"},
            "WORKPOOL_FULL_MODE: full_mode of a durable channel must be 'wait' or 'reject'",
        ),
        (
            {"WORKPOOL_CHANNEL": "sqlite:///j.db", "WORKPOOL_ENQUEUE_TIMEOUT": "3"},
            "WORKPOOL_ENQUEUE_TIMEOUT: applies to the in-memory channel",
        ),
        (
            {"WORKPOOL_CHANNEL": "memory:?capacity=5", "WORKPOOL_CAPACITY": "10"},
            "WORKPOOL_CAPACITY=10 conflicts with capacity=5",
        ),
    ],
)
def test_bad_channel_settings_name_the_variable(
    env: dict[str, str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad or misplaced channel setting is a SettingsError naming its variable."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    assert words in str(caught.value)


def test_settings_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis URL's password appears neither in errors (their causes included) nor in
    the settings' repr."""
    monkeypatch.setenv("WORKPOOL_CHANNEL", f"redis://:{SECRET}@cache:port/0")
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    assert "redis://:***@cache:port/0" in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    settings = PoolSettings(channel=f"redis://:{SECRET}@cache:6379/0")
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert "redis://:***@cache:6379/0" in repr(settings)
