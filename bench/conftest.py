"""Fixtures for the benchmark suites: one long-lived event loop per backend."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
from anyio.from_thread import start_blocking_portal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anyio.from_thread import BlockingPortal

#: backend name -> (anyio backend, backend options)
BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def pytest_configure(config: pytest.Config) -> None:
    # taskiq_dependencies imports fastapi when it is installed (the dev extra has
    # it), which warns about starlette's test client: not ours, not a failure.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:fastapi.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:starlette.*")
    # taskiq logs every failed attempt with its traceback; formatting 10,000
    # tracebacks to stderr would measure the terminal, not taskiq.
    logging.getLogger("taskiq").setLevel(logging.CRITICAL + 1)


@pytest.fixture(scope="session")
def portals() -> Iterator[Callable[[str], BlockingPortal]]:
    """``portals(name)``: the session's event loop for a backend, started on first use."""
    opened: dict[str, BlockingPortal] = {}
    with ExitStack() as stack:

        def get(name: str) -> BlockingPortal:
            if name not in opened:
                backend, options = BACKENDS[name]
                opened[name] = stack.enter_context(start_blocking_portal(backend, options))
            return opened[name]

        yield get


@pytest.fixture
def portal(portals: Callable[[str], BlockingPortal]) -> BlockingPortal:
    """The asyncio event loop every suite but the backends' one runs on."""
    return portals("asyncio")
