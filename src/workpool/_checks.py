"""Argument checks shared by the public constructors: one wording for one mistake."""

from __future__ import annotations

import math

__all__ = ["check_count", "check_non_negative_seconds", "check_seconds", "check_timeout"]


def check_count(value: int, argument: str) -> int:
    """An ``int`` of at least 1 (``consumers``, ``capacity``, ``thread_limit``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument} must be at least 1, got {value}")
    return value


def check_seconds(value: float, argument: str) -> float:
    """A positive, finite number of seconds (a duration that must elapse)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{argument} must be a number of seconds, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{argument} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_timeout(timeout: float | None, argument: str = "timeout") -> float | None:
    """``None`` (no limit) or a positive, finite number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"{argument} must be a number of seconds or None, got {timeout!r}")
    return check_seconds(timeout, argument)


def check_non_negative_seconds(value: float, argument: str) -> float:
    """Zero or more seconds (a deadline or a grace, where 0 means at once)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{argument} must be a number of seconds, got {value!r}")
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{argument} must be zero or more seconds, got {value!r}")
    return float(value)
