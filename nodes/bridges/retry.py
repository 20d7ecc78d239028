"""When to try a provider again: exponential backoff with jitter, bounded by the deadline."""

from __future__ import annotations

import random
from collections.abc import Callable

from mesh.config import RetryPolicy
from mesh.contract.errors import MeshError

# An attempt that cannot get at least this long before the deadline is not worth starting.
MIN_ATTEMPT_S = 0.25


def backoff_s(policy: RetryPolicy, failed_attempts: int, rand: Callable[[], float]) -> float:
    """Delay after the n-th failed attempt: half fixed, half random ("equal jitter").

    The fixed half keeps retries from hammering a struggling provider; the random half keeps
    many bridges that failed together from retrying together.
    """
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** (failed_attempts - 1))
    return ceiling / 2 + rand() * ceiling / 2


def next_delay(
    error: MeshError,
    *,
    policy: RetryPolicy,
    attempts: int,
    output_sent: bool,
    time_left_s: float | None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the error must go to the caller.

    Retried: retryable errors (429, 5xx, connection), before any output was sent, while
    attempts remain and the wait plus a useful attempt fit in the caller's deadline. A
    provider's Retry-After is a floor on the wait.
    """
    if not error.retryable or output_sent or attempts >= policy.max_attempts:
        return None
    delay = backoff_s(policy, attempts, rand)
    if error.retry_after_s is not None:
        delay = max(delay, error.retry_after_s)
    if time_left_s is not None and delay + MIN_ATTEMPT_S > time_left_s:
        return None
    return delay
