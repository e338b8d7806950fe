"""Fixtures for the SQLite channel's tests: a database file per test, channels that
are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from workpool import SqliteChannel

if TYPE_CHECKING:
    from pathlib import Path

MakeChannel = Callable[..., SqliteChannel]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh database file path."""
    return tmp_path / "jobs.db"


@pytest.fixture
async def make_channel(db: Path) -> AsyncIterator[MakeChannel]:
    """Make channels on the test's file (keyword arguments as SqliteChannel's);
    each is closed at the end of the test."""
    made: list[SqliteChannel] = []

    def make(**kwargs: Any) -> SqliteChannel:
        channel = SqliteChannel(kwargs.pop("path", db), **kwargs)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.aclose()
