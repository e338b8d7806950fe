"""Fault tests of the SQLite channel with real worker processes on a real file."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from tests.durable.harness import Harness

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

if sys.platform == "win32":  # pragma: no cover
    collect_ignore_glob = ["test_*.py"]  # kill -9 and SIGTERM: POSIX only


@pytest.fixture
def harness(tmp_path: Path, anyio_backend: str) -> Iterator[Harness]:
    """The test's file and worker processes (on the test's backend); killed at the end."""
    started = Harness(tmp_path, anyio_backend)
    yield started
    started.close()
