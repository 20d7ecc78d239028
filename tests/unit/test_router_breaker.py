"""Circuit-breaker transitions and outlier ejection, with a hand-stepped clock."""

from __future__ import annotations

from mesh.config import BreakerSettings
from mesh.router.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerBoard,
    CircuitBreaker,
    latency_outliers,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = BreakerSettings(
    consecutive_failures=3, error_rate=0.5, window_s=10, min_calls=6, cooldown_s=5
)


def test_opens_after_consecutive_failures_then_half_open_single_probe() -> None:
    clock = FakeClock()
    b = CircuitBreaker(SETTINGS, clock)
    for _ in range(2):
        b.record_failure()
    assert b.state == CLOSED
    b.record_failure()
    assert b.state == OPEN and not b.available() and not b.allow_request()
    clock.now += 4.9
    assert b.state == OPEN
    clock.now += 0.2
    assert b.state == HALF_OPEN and b.available()
    assert b.allow_request()  # the single probe
    assert not b.allow_request() and not b.available()
    b.record_success()
    assert b.state == CLOSED and b.allow_request()


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    b = CircuitBreaker(SETTINGS, clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow_request()
    b.record_failure()
    assert b.state == OPEN and b.opened_count == 2
    clock.now += 5
    assert b.state == HALF_OPEN


def test_lost_probe_does_not_block_forever() -> None:
    clock = FakeClock()
    b = CircuitBreaker(SETTINGS, clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow_request()
    clock.now += 5  # the probe's caller vanished without reporting
    assert b.allow_request()


def test_error_rate_window_opens_without_a_failure_run() -> None:
    clock = FakeClock()
    b = CircuitBreaker(SETTINGS, clock)
    for _ in range(3):  # alternate: never 3 failures in a row
        b.record_success()
        assert b.state == CLOSED
        b.record_failure()
        clock.now += 1
    assert b.state == OPEN  # 3 of 6 failed = 50 %


def test_old_failures_leave_the_window() -> None:
    clock = FakeClock()
    b = CircuitBreaker(SETTINGS, clock)
    for _ in range(2):
        b.record_failure()
        b.record_success()
    clock.now += 11
    for _ in range(2):
        b.record_success()
        b.record_failure()
        b.record_success()
    assert b.state == CLOSED
    assert b.error_rate() < 0.5


def test_latency_outliers_use_the_median() -> None:
    lat = {"a": 100.0, "b": 110.0, "c": 120.0, "d": 900.0}
    assert latency_outliers(lat, factor=3, min_nodes=3) == {"d"}
    assert latency_outliers({"a": 100.0, "d": 900.0}, factor=3, min_nodes=3) == set()
    assert latency_outliers({**lat, "x": 0.0}, factor=3, min_nodes=3) == {"d"}  # unknown ignored


def test_board_ejects_outlier_for_a_while_and_reports_states() -> None:
    clock = FakeClock()
    board = BreakerBoard(BreakerSettings(outlier_ejection_s=30), clock)
    assert board.update_latencies({"a": 100, "b": 100, "c": 120, "slow": 2000}) == {"slow"}
    assert not board.available("slow") and board.available("a")
    assert board.state("slow") == CLOSED  # ejection is separate from the breaker
    clock.now += 31
    assert board.available("slow")
    for _ in range(5):
        board.record_failure("a")
    assert board.state("a") == OPEN and not board.allow_request("a")
    board.forget("a")
    assert board.state("a") == CLOSED
