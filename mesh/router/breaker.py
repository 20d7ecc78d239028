"""Per-node circuit breakers and latency-outlier ejection.

A breaker opens on either signal: a run of consecutive failures (a node that died) or a high
error rate over a time window (a node that fails intermittently, which a consecutive count can
miss). After a cooldown exactly one probe request is let through; its outcome closes the breaker
or re-opens it for another cooldown. The clock is injectable so tests step time by hand.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping

from mesh.config import BreakerSettings
from mesh.v1 import registry_pb2

Clock = Callable[[], float]

CLOSED = registry_pb2.BREAKER_STATE_CLOSED
OPEN = registry_pb2.BREAKER_STATE_OPEN
HALF_OPEN = registry_pb2.BREAKER_STATE_HALF_OPEN

STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}


class CircuitBreaker:
    """The breaker of one node. Not thread-safe: use it from the event loop."""

    def __init__(self, settings: BreakerSettings | None = None, clock: Clock = time.monotonic):
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._state: int = CLOSED
        self._opened_at = 0.0
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._probe_started: float | None = None
        self.opened_count = 0

    @property
    def state(self) -> int:
        """A registry_pb2.BreakerState value; OPEN turns HALF_OPEN once the cooldown is over."""
        if self._state == OPEN and self._clock() - self._opened_at >= self.settings.cooldown_s:
            self._state = HALF_OPEN
            self._probe_started = None
        return self._state

    def available(self) -> bool:
        """Whether a request could be sent now, without claiming the half-open probe."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN:
            return self._probe_started is None or self._probe_stale()
        return False

    def allow_request(self) -> bool:
        """Claim permission for one call; in half-open only the first caller gets it."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and (self._probe_started is None or self._probe_stale()):
            self._probe_started = self._clock()
            return True
        return False

    def record_success(self) -> None:
        self._consecutive = 0
        self._note(ok=True)
        if self.state == HALF_OPEN:
            self._close()

    def record_failure(self) -> None:
        self._consecutive += 1
        self._note(ok=False)
        state = self.state
        if state == HALF_OPEN or (state == CLOSED and self._should_open()):
            self._open()

    def error_rate(self) -> float:
        """Share of failed calls in the current window (0 when it is empty)."""
        self._trim()
        if not self._window:
            return 0.0
        return sum(1 for _, ok in self._window if not ok) / len(self._window)

    # -- internals --------------------------------------------------------------------------
    def _probe_stale(self) -> bool:
        # A probe whose outcome never came back (caller cancelled) must not block forever.
        return (
            self._probe_started is not None
            and self._clock() - self._probe_started >= self.settings.cooldown_s
        )

    def _should_open(self) -> bool:
        if self._consecutive >= self.settings.consecutive_failures:
            return True
        self._trim()
        return (
            len(self._window) >= self.settings.min_calls
            and self.error_rate() >= self.settings.error_rate
        )

    def _note(self, ok: bool) -> None:
        self._window.append((self._clock(), ok))
        self._trim()

    def _trim(self) -> None:
        cutoff = self._clock() - self.settings.window_s
        while self._window and self._window[0][0] < cutoff:
            self._window.popleft()

    def _open(self) -> None:
        self._state = OPEN
        self._opened_at = self._clock()
        self._probe_started = None
        self.opened_count += 1

    def _close(self) -> None:
        self._state = CLOSED
        self._consecutive = 0
        self._window.clear()  # old failures must not re-open a node that just recovered
        self._probe_started = None


def latency_outliers(
    latencies_ms: Mapping[str, float], factor: float, min_nodes: int, max_share: float = 0.5
) -> set[str]:
    """Nodes whose latency exceeds `factor` times the median of all nodes.

    The median, not the mean, so one very slow node cannot raise the bar that would catch it;
    at most `max_share` of the nodes are returned (worst first) so ejection never empties a pool.
    """
    known = {n: v for n, v in latencies_ms.items() if v > 0}
    if len(known) < min_nodes:
        return set()
    median = statistics.median(known.values())
    slow = sorted((n for n, v in known.items() if v > factor * median), key=lambda n: -known[n])
    return set(slow[: int(len(known) * max_share)])


class BreakerBoard:
    """Breakers for every node plus latency-outlier ejection, keyed by node id."""

    def __init__(self, settings: BreakerSettings | None = None, clock: Clock = time.monotonic):
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._ejected_until: dict[str, float] = {}

    def breaker(self, node_id: str) -> CircuitBreaker:
        found = self._breakers.get(node_id)
        if found is None:
            found = self._breakers[node_id] = CircuitBreaker(self.settings, self._clock)
        return found

    def state(self, node_id: str) -> int:
        """registry_pb2.BreakerState for `mesh nodes` and metrics."""
        return self.breaker(node_id).state

    def available(self, node_id: str) -> bool:
        """Routable now: breaker not open and not ejected as a latency outlier."""
        return self.breaker(node_id).available() and not self.ejected(node_id)

    def allow_request(self, node_id: str) -> bool:
        """Claim a call (the half-open probe included); call right before sending."""
        return not self.ejected(node_id) and self.breaker(node_id).allow_request()

    def record_success(self, node_id: str) -> None:
        self.breaker(node_id).record_success()

    def record_failure(self, node_id: str) -> None:
        self.breaker(node_id).record_failure()

    def ejected(self, node_id: str) -> bool:
        until = self._ejected_until.get(node_id)
        if until is None:
            return False
        if self._clock() >= until:
            del self._ejected_until[node_id]
            return False
        return True

    def update_latencies(self, latencies_ms: Mapping[str, float]) -> set[str]:
        """Eject outliers among the given EWMA TTFTs; returns the newly ejected node ids."""
        s = self.settings
        active = {n: v for n, v in latencies_ms.items() if not self.ejected(n)}
        new = latency_outliers(active, s.outlier_factor, s.outlier_min_nodes, s.max_ejected_share)
        until = self._clock() + s.outlier_ejection_s
        for node_id in new:
            self._ejected_until[node_id] = until
        return new

    def forget(self, node_id: str) -> None:
        """Drop state of a node that left the routing table."""
        self._breakers.pop(node_id, None)
        self._ejected_until.pop(node_id, None)
