"""Retry decisions: which errors, how long to wait, and never past output or the deadline."""

from __future__ import annotations

import pytest

from mesh.config import RetryPolicy
from mesh.contract.errors import Code, MeshError
from nodes.bridges.retry import MIN_ATTEMPT_S, backoff_s, next_delay

POLICY = RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=3.0)


def _error(retryable: bool = True, retry_after_s: float | None = None) -> MeshError:
    return MeshError("x", code=Code.UNAVAILABLE, retryable=retryable, retry_after_s=retry_after_s)


@pytest.mark.parametrize(("failed", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)])
def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half(
    failed: int, ceiling: float
) -> None:
    assert backoff_s(POLICY, failed, lambda: 0.0) == pytest.approx(ceiling / 2)
    assert backoff_s(POLICY, failed, lambda: 1.0) == pytest.approx(ceiling)
    assert backoff_s(POLICY, failed, lambda: 0.5) == pytest.approx(ceiling * 0.75)


def test_retryable_error_before_output_is_retried() -> None:
    delay = next_delay(
        _error(), policy=POLICY, attempts=1, output_sent=False, time_left_s=None, rand=lambda: 1
    )
    assert delay == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("error", "attempts", "output_sent"),
    [
        (_error(retryable=False), 1, False),  # 400, 401, 404, timeouts
        (_error(), 1, True),  # output already went to the caller: no silent splice
        (_error(), 4, False),  # attempts used up
    ],
)
def test_not_retried(error: MeshError, attempts: int, output_sent: bool) -> None:
    assert (
        next_delay(
            error, policy=POLICY, attempts=attempts, output_sent=output_sent, time_left_s=None
        )
        is None
    )


def test_retry_after_is_a_floor() -> None:
    delay = next_delay(
        _error(retry_after_s=2.5),
        policy=POLICY,
        attempts=1,
        output_sent=False,
        time_left_s=None,
        rand=lambda: 0,
    )
    assert delay == 2.5


def test_the_deadline_bounds_the_wait() -> None:
    error = _error(retry_after_s=5.0)
    assert next_delay(error, policy=POLICY, attempts=1, output_sent=False, time_left_s=5.0) is None
    assert next_delay(
        error, policy=POLICY, attempts=1, output_sent=False, time_left_s=5.0 + MIN_ATTEMPT_S + 0.1
    ) == pytest.approx(5.0)
