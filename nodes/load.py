"""Admission control and the load figures a node reports to routers."""

from __future__ import annotations

from mesh.contract.errors import Overloaded


class Ewma:
    """Exponentially weighted moving average; `None` until the first sample."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def add(self, sample: float) -> None:
        self.value = (
            sample if self.value is None else self.alpha * sample + (1 - self.alpha) * self.value
        )


class Admission:
    """Bounded in-flight requests: above the limit callers are told to retry, not queued forever."""

    def __init__(self, max_inflight: int, retry_after_s: float = 0.5) -> None:
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        self.inflight = 0

    def enter(self) -> None:
        if self.inflight >= self.max_inflight:
            raise Overloaded(
                f"node is at its limit of {self.max_inflight} in-flight requests",
                metadata={"max_inflight": str(self.max_inflight)},
                retry_after_s=self.retry_after_s,
            )
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1
