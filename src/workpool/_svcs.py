"""``svcs``, imported without the warning its eager FastAPI integration causes.

``svcs/__init__.py`` imports each of its framework integrations whose framework is
installed, so ``import svcs`` (or any ``svcs.<module>``: the package runs first)
imports ``svcs.fastapi`` in every app that has FastAPI. That module imports
``fastapi.testclient`` at run time for one type annotation, and Starlette >= 1.x
warns there (``StarletteDeprecationWarning``, a ``UserWarning``, shown by default)
when its test client would use ``httpx`` rather than ``httpx2``. workpool uses
neither the FastAPI integration of svcs nor a test client, so that warning says
nothing about the user's code; it is ignored for this one import statement, by its
exact message, and every other warning goes through.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message=r"Using `httpx` with `starlette\.testclient` is deprecated",
        category=UserWarning,
    )
    import svcs as svcs

__all__ = ["svcs"]
