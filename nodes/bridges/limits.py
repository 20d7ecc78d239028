"""Requests- and tokens-per-minute limits of one bridge, checked before the provider is called.

Token buckets refill continuously. A request takes one request token and its estimated
tokens up front; when the provider reports real usage the token bucket is corrected, so an
underestimate is paid back by later requests rather than forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mesh.config import BridgeLimits
from mesh.contract.errors import Overloaded

Clock = Callable[[], float]


class TokenBucket:
    """`per_minute` units, refilled evenly; may go negative after a correction."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._level = self.capacity
        self._at = clock()

    @property
    def level(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
        self._at = now
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 if it is now).

        A request larger than the whole bucket waits for a full bucket instead of forever.
        """
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float) -> None:
        self._level = self.level - amount


@dataclass
class Reservation:
    """What one admitted request took from the token bucket, to correct later."""

    estimated_tokens: int
    settled: bool = False


class RateLimiter:
    """The rpm/tpm limits of one bridge (either may be off)."""

    def __init__(
        self,
        limits: BridgeLimits,
        *,
        bridge_id: str,
        metadata: dict[str, str] | None = None,
        clock: Clock = time.monotonic,
    ):
        self.bridge_id = bridge_id
        self.metadata = {"node_id": bridge_id, **(metadata or {})}
        self.requests = (
            TokenBucket(limits.requests_per_minute, clock) if limits.requests_per_minute else None
        )
        self.tokens = (
            TokenBucket(limits.tokens_per_minute, clock) if limits.tokens_per_minute else None
        )

    def acquire(self, estimated_tokens: int) -> Reservation:
        """Admit a request or raise Overloaded with the time after which it would be admitted."""
        waits: dict[str, float] = {}
        if self.requests is not None and (wait := self.requests.wait_for(1)) > 0:
            waits["requests_per_minute"] = wait
        if self.tokens is not None and (wait := self.tokens.wait_for(estimated_tokens)) > 0:
            waits["tokens_per_minute"] = wait
        if waits:
            limit = max(waits, key=lambda k: waits[k])
            raise Overloaded(
                f"bridge {self.bridge_id} is over its {limit.replace('_', ' ')} limit",
                reason="BRIDGE_RATE_LIMITED",
                metadata={"limit": limit, **self.metadata},
                retry_after_s=round(max(waits.values()), 3),
            )
        if self.requests is not None:
            self.requests.take(1)
        if self.tokens is not None:
            self.tokens.take(estimated_tokens)
        return Reservation(estimated_tokens)

    def settle(self, reservation: Reservation, actual_tokens: int | None) -> None:
        """Correct the token bucket with real usage (None: the request never reached usage).

        A request that failed before usage keeps its estimate charged: the provider may still
        have counted it.
        """
        if reservation.settled:
            return
        reservation.settled = True
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.take(actual_tokens - reservation.estimated_tokens)
