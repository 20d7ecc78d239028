"""Requests/tokens per minute: refused before the provider is called, with a retry delay."""

from __future__ import annotations

import pytest

from mesh.config import BridgeLimits
from mesh.contract.errors import Code, Overloaded
from nodes.bridges.limits import RateLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_evenly_up_to_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock)
    bucket.take(60)
    assert bucket.wait_for(1) == pytest.approx(1.0)
    clock.now += 30
    assert bucket.level == pytest.approx(30)
    clock.now += 1000
    assert bucket.level == pytest.approx(60)


def test_requests_per_minute_refuses_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(BridgeLimits(requests_per_minute=2), bridge_id="b1", clock=clock)
    limiter.acquire(10)
    limiter.acquire(10)
    with pytest.raises(Overloaded) as caught:
        limiter.acquire(10)
    error = caught.value
    assert error.code is Code.RESOURCE_EXHAUSTED and error.reason == "BRIDGE_RATE_LIMITED"
    assert error.metadata == {"limit": "requests_per_minute", "node_id": "b1"}
    assert error.retry_after_s == pytest.approx(30.0)
    clock.now += 30
    limiter.acquire(10)


def test_tokens_per_minute_charges_the_estimate_and_corrects_with_usage() -> None:
    clock = Clock()
    limiter = RateLimiter(BridgeLimits(tokens_per_minute=1000), bridge_id="b1", clock=clock)
    first = limiter.acquire(600)
    with pytest.raises(Overloaded) as caught:
        limiter.acquire(600)
    assert caught.value.metadata["limit"] == "tokens_per_minute"
    assert caught.value.retry_after_s == pytest.approx(200 / (1000 / 60), rel=1e-3)
    limiter.settle(first, 100)  # the request used far fewer tokens than estimated
    limiter.acquire(600)
    limiter.settle(first, 100)  # settling twice changes nothing
    assert limiter.tokens is not None and limiter.tokens.level == pytest.approx(300)


def test_a_refused_request_takes_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(
        BridgeLimits(requests_per_minute=10, tokens_per_minute=100), bridge_id="b", clock=clock
    )
    limiter.acquire(100)
    with pytest.raises(Overloaded):
        limiter.acquire(50)  # over the token limit: the request limit must not be charged
    assert limiter.requests is not None and limiter.requests.level == pytest.approx(9)


def test_a_request_larger_than_the_bucket_passes_once_the_bucket_is_full() -> None:
    clock = Clock()
    limiter = RateLimiter(BridgeLimits(tokens_per_minute=100), bridge_id="b", clock=clock)
    limiter.acquire(500)  # full bucket: admitted, and the bucket goes negative
    with pytest.raises(Overloaded) as caught:
        limiter.acquire(1)
    assert caught.value.retry_after_s == pytest.approx((400 + 1) / (100 / 60), rel=1e-3)


def test_no_limits_admit_everything() -> None:
    limiter = RateLimiter(BridgeLimits(), bridge_id="b")
    for _ in range(1000):
        limiter.acquire(10**6)
