"""How often one peer may write to the registry: a token bucket per peer host, LRU-bounded.

Keyed by host, not host:port, because a client gets a new port with every connection. Each
bucket holds `per_minute` tokens and refills evenly, so a peer may burst a minute's worth
(many nodes on one machine starting at once) and then one every 60/per_minute seconds. The
table keeps at most `max_peers` hosts; the least recently seen is forgotten first, so memory
stays bounded however many addresses a caller uses (a forgotten host starts with a full bucket,
which gives it nothing it could not get from a fresh address anyway).

The bridges' TokenBucket (nodes.bridges.limits) does the same arithmetic but lives in nodes/,
which the router does not import; no declared dependency offers a keyed, bounded limiter.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]


def peer_host(peer: str) -> str:
    """`ipv4:10.0.0.7:53122` -> `ipv4:10.0.0.7`, `ipv6:[::1]:53122` -> `ipv6:[::1]`.

    Anything else (unix sockets, an empty peer) is its own key.
    """
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit():
            return host
    return peer


class PeerRateLimiter:
    """`per_minute` calls per peer host, in bursts of as many; at most `max_peers` tracked."""

    def __init__(self, per_minute: int, max_peers: int, clock: Clock = time.monotonic) -> None:
        if per_minute < 1 or max_peers < 1:
            raise ValueError("per_minute and max_peers must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_peers = max_peers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # level, at

    def take(self, peer: str) -> float:
        """Take one token for `peer`'s host: 0.0 if admitted, else seconds until one is free."""
        key = peer_host(peer)
        now = self._clock()
        level, at = self._buckets.pop(key, (self.capacity, now))
        level = min(self.capacity, level + (now - at) * self.rate)
        admitted = level >= 1.0
        if admitted:
            level -= 1.0
        self._buckets[key] = (level, now)  # most recently seen last
        while len(self._buckets) > self.max_peers:
            self._buckets.popitem(last=False)
        return 0.0 if admitted else (1.0 - level) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
