"""Importing workpool is silent, also next to FastAPI (svcs imports its integrations)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["workpool", "workpool.integrations.starlette"])
def test_import_under_w_error_with_fastapi_and_httpx_installed(module: str) -> None:
    """``python -W error -c "import workpool"`` passes where fastapi and httpx are installed."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_user_still_sees_other_warnings_of_that_import() -> None:
    """Only svcs' test-client warning is ignored: workpool's import leaves filters as they were."""
    code = (
        "import warnings, workpool\n"
        "assert not any('starlette' in str(f[1]) for f in warnings.filters), warnings.filters\n"
        "warnings.warn('still visible', UserWarning)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "still visible" in done.stderr
