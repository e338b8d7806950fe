"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import logging
import os

import pytest

# First, before any test module: a module that imports svcs itself would otherwise
# import it first, and svcs' eager FastAPI integration warns about Starlette's test
# client (an error under filterwarnings = error); workpool imports svcs without
# that warning (workpool/_svcs.py).
import workpool  # noqa: F401


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per backend."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No WORKPOOL_* variable or stray .env from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("WORKPOOL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def workpool_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture workpool's own log records at DEBUG and above."""
    caplog.set_level(logging.DEBUG, logger="workpool")
    return caplog
