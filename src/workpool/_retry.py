"""Retry policies on tenacity, and the per-item retry run the consumers drive."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, final

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_none,
    wait_random,
)
from tenacity import DoSleep as _DoSleep
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

__all__ = ["RetryPolicy", "RetryRun", "retry_policy"]

F = TypeVar("F", bound=Callable[..., Any])

StopStrategy = stop_base | Callable[[RetryCallState], bool | Awaitable[bool]]
WaitStrategy = wait_base | Callable[[RetryCallState], float | Awaitable[float]]
RetryPredicate = retry_base | Callable[[RetryCallState], bool | Awaitable[bool]]
BeforeSleep = Callable[[RetryCallState], Awaitable[None] | None]


@final
class RetryPolicy:
    """How an item is retried: tenacity's ``stop``, ``wait`` and ``retry`` strategies.

    Any tenacity strategy works, combined with ``|`` and ``&`` as tenacity allows.
    A policy is immutable and safe to share: each failing item gets its own
    tenacity state. Cancellation never reaches the ``retry`` predicate, so even a
    catch-all predicate cannot retry it.

    Args:
        stop: when to give up; default ``stop_after_attempt(3)``.
        wait: how long to wait before each retry; default no wait.
        retry: which outcomes to retry; default any ``Exception``.
        before_sleep: called (sync or async) before each wait, with tenacity's
            ``RetryCallState``.
    """

    __slots__ = ("_attempts", "before_sleep", "retry", "stop", "wait")

    stop: StopStrategy
    wait: WaitStrategy
    retry: RetryPredicate
    before_sleep: BeforeSleep | None

    def __init__(
        self,
        *,
        stop: StopStrategy | None = None,
        wait: WaitStrategy | None = None,
        retry: RetryPredicate | None = None,
        before_sleep: BeforeSleep | None = None,
    ) -> None:
        for argument, value in (("stop", stop), ("wait", wait), ("retry", retry)):
            if value is not None and not callable(value):
                raise TypeError(f"{argument} must be a tenacity strategy, got {value!r}")
        if before_sleep is not None and not callable(before_sleep):
            raise TypeError(f"before_sleep must be callable, got {before_sleep!r}")
        stop = stop if stop is not None else stop_after_attempt(3)
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "wait", wait if wait is not None else wait_none())
        object.__setattr__(
            self, "retry", retry if retry is not None else retry_if_exception_type(Exception)
        )
        object.__setattr__(self, "before_sleep", before_sleep)
        attempts = (
            getattr(stop, "max_attempt_number", None) if type(stop) is stop_after_attempt else None
        )
        object.__setattr__(self, "_attempts", attempts)

    @classmethod
    def exponential(
        cls,
        attempts: int = 3,
        *,
        initial: float = 0.1,
        maximum: float = 30.0,
        multiplier: float = 2.0,
        jitter: float = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> RetryPolicy:
        """Up to *attempts* attempts with exponential backoff.

        The wait before retry *k* is ``min(maximum, initial * multiplier**(k-1))``
        plus a uniform random ``[0, jitter]`` seconds.

        Raises:
            ValueError: *attempts* below 1, or a negative (or non-finite) time.
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int of at least 1, got {attempts!r}")
        for argument, value in (("initial", initial), ("maximum", maximum), ("jitter", jitter)):
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ValueError(
                    f"{argument} must be a non-negative number of seconds, got {value!r}"
                )
        if not (
            isinstance(multiplier, int | float) and multiplier >= 1 and math.isfinite(multiplier)
        ):
            raise ValueError(f"multiplier must be a number of at least 1, got {multiplier!r}")
        types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        if not types or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise TypeError(
                f"retry_on must be an exception type or a tuple of them, got {retry_on!r}"
            )
        wait: wait_base = wait_exponential(multiplier=initial, max=maximum, exp_base=multiplier)
        if jitter > 0:
            wait = wait + wait_random(0, jitter)
        return cls(
            stop=stop_after_attempt(attempts),
            wait=wait,
            retry=retry_if_exception_type(types),
        )

    @property
    def max_attempts(self) -> int | None:
        """The attempt limit when ``stop`` is a plain ``stop_after_attempt``, else ``None``."""
        attempts: int | None = object.__getattribute__(self, "_attempts")
        return attempts

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"RetryPolicy is immutable; build a new one instead of setting {name!r}"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError("RetryPolicy is immutable")

    def __repr__(self) -> str:
        return f"RetryPolicy(stop={self.stop!r}, wait={self.wait!r}, retry={self.retry!r})"

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=self.stop,  # type: ignore[arg-type]
            wait=self.wait,  # type: ignore[arg-type]
            retry=self.retry,  # type: ignore[arg-type]
            before_sleep=self.before_sleep,
            sleep=anyio.sleep,
            reraise=True,
        )


def retry_policy(policy: RetryPolicy | None = None, /, **kwargs: Any) -> Callable[[F], F]:
    """Attach a `RetryPolicy` to a work function, without wrapping its call.

    ::

        @retry_policy(RetryPolicy.exponential(5, initial=0.5))
        async def send_receipt(scope, stopping): ...

        @retry_policy(stop=stop_after_attempt(4))
        async def call_slow_api(scope, stopping): ...

    The pool finds the policy through ``functools.partial`` too. A policy passed to
    ``enqueue(retry=...)`` wins over the function's.

    Raises:
        TypeError: both a policy and keywords, or something that is not a policy.
    """
    if policy is None:
        policy = RetryPolicy(**kwargs)
    elif kwargs:
        raise TypeError("retry_policy() takes a RetryPolicy or keywords, not both")
    elif not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry_policy() needs a RetryPolicy, got {policy!r}")
    chosen = policy

    def decorate(func: F) -> F:
        try:
            func.__workpool_retry__ = chosen  # type: ignore[attr-defined]
        except AttributeError:
            raise TypeError(
                f"cannot attach a retry policy to {func!r}; decorate the function itself, "
                "or pass enqueue(retry=...)"
            ) from None
        return func

    return decorate


@final
class RetryRun:
    """tenacity's state for one item, brought in only after its first failure.

    *attempt* is the number of the attempt that failed first here (above 1 when a
    durable channel carried attempts over a reschedule). The first attempt runs
    without tenacity; when it fails, this replays it into a
    fresh ``AsyncRetrying`` (its own per-run state: never shared between items) and
    asks tenacity, after each failure, whether and how long to wait. Decisions,
    attempt numbers, statistics and ``before_sleep`` calls are tenacity's own.
    """

    __slots__ = ("_retrying", "_state")

    def __init__(self, policy: RetryPolicy, started_at: float, attempt: int = 1) -> None:
        retrying = policy._retrying()
        retrying.begin()
        state = RetryCallState(retrying, fn=None, args=(), kwargs={})
        state.start_time = started_at
        if attempt != 1:
            # Attempts made before a reschedule count: stop_after_attempt(n) sees them.
            state.attempt_number = attempt
            retrying.statistics["attempt_number"] = attempt
        self._retrying = retrying
        self._state = state

    @property
    def attempt_number(self) -> int:
        """The attempt tenacity is on (1-based)."""
        return self._state.attempt_number

    async def next_delay(self, exc: BaseException) -> float:
        """Record attempt failure *exc*; return the wait before the next attempt.

        Raises:
            Exception: the exception to give up with (tenacity re-raises the last
                attempt's), when the policy says not to retry.
        """
        state = self._state
        state.set_exception((type(exc), exc, exc.__traceback__))
        try:
            action = await self._retrying.iter(state)
        finally:
            state.outcome = None  # the exception lives on only in what is raised
        if isinstance(action, _DoSleep):
            delay = float(action)
            if not delay >= 0:  # anyio.sleep would raise in the consumer, not here
                raise ValueError(
                    f"the retry policy's wait returned {delay!r} seconds after attempt "
                    f"{state.attempt_number}; waits must be zero or more seconds"
                ) from exc
            state.prepare_for_next_attempt()
            return delay
        raise RuntimeError(
            f"unexpected tenacity action after a failure: {action!r}"
        )  # pragma: no cover

    def close(self) -> None:
        """Drop tenacity's state (and with it any reference to exceptions)."""
        self._state.outcome = None
        self._retrying.iter_state.reset()
