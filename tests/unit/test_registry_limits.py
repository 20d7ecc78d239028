"""The per-peer token bucket of registry writes: rate, burst, host keys and a bounded table."""

from __future__ import annotations

import pytest

from mesh.router.registry_limits import PeerRateLimiter, peer_host


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:53122", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:53122", "ipv6:[::1]"),
        ("ipv6:[fd00::5]:1", "ipv6:[fd00::5]"),
        ("unix:/tmp/mesh.sock", "unix:/tmp/mesh.sock"),
        ("", ""),
    ],
)
def test_peers_are_keyed_by_host_not_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_a_minute_of_burst_then_one_per_interval_with_the_wait_stated() -> None:
    clock = FakeClock()
    limiter = PeerRateLimiter(per_minute=6, max_peers=10, clock=clock)
    assert [limiter.take("ipv4:10.0.0.7:1") for _ in range(6)] == [0.0] * 6
    # A new connection (new port) from the same host shares the bucket.
    wait = limiter.take("ipv4:10.0.0.7:2")
    assert wait == pytest.approx(10.0)  # 6 per minute: one every 10 s
    clock.now += 5
    assert limiter.take("ipv4:10.0.0.7:3") == pytest.approx(5.0)
    clock.now += 5
    assert limiter.take("ipv4:10.0.0.7:3") == 0.0
    assert limiter.take("ipv4:10.0.0.7:3") > 0
    # Another host has its own bucket.
    assert limiter.take("ipv4:10.0.0.8:1") == 0.0
    # Refills up to the burst, never beyond it.
    clock.now += 3600
    assert [limiter.take("ipv4:10.0.0.7:1") for _ in range(7)][-2:] == [0.0, pytest.approx(10.0)]


def test_the_peer_table_is_bounded_least_recently_seen_first() -> None:
    clock = FakeClock()
    limiter = PeerRateLimiter(per_minute=1, max_peers=3, clock=clock)
    for i in range(1000):
        limiter.take(f"ipv4:10.0.{i // 256}.{i % 256}:1")
    assert len(limiter) == 3
    limiter = PeerRateLimiter(per_minute=1, max_peers=2, clock=clock)
    limiter.take("ipv4:10.0.0.1:1")
    limiter.take("ipv4:10.0.0.2:1")
    assert limiter.take("ipv4:10.0.0.1:1") > 0  # seen again: now the most recent
    limiter.take("ipv4:10.0.0.3:1")  # evicts 10.0.0.2, not 10.0.0.1
    assert limiter.take("ipv4:10.0.0.1:1") > 0
    assert limiter.take("ipv4:10.0.0.2:1") == 0.0  # forgotten: a fresh bucket


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        PeerRateLimiter(per_minute=0, max_peers=1)
