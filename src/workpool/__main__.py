"""``python -m workpool``: the command line (``python -m workpool demo``)."""

from __future__ import annotations

import sys

from ._demo import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
