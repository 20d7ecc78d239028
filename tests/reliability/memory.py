"""A router's resident memory under load: sampled every second from its own process, compared
as medians of 5-second windows (after the warm-up, at the end) so one noisy sample does not
decide. The bound is BENCH.md's: at most 5 MB growth over a soak."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psutil

RSS_GROWTH_LIMIT_MB = 5.0
WARM_UP_SHARE = 0.25  # the first quarter of a soak fills caches, pools and allocator arenas
SAMPLE_EVERY_S = 1.0
WINDOW_S = 5.0


@dataclass
class RssSamples:
    """(seconds since the start, RSS bytes) of one process."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def median_mb(self, start: float, end: float) -> float:
        window = [rss for at, rss in self.samples if start <= at <= end]
        assert window, f"no RSS sample between {start:.0f} s and {end:.0f} s"
        return statistics.median(window) / 2**20

    def growth(self, soak_s: float) -> tuple[float, float, float]:
        """(MB after the warm-up, MB at the end, growth in MB) of a soak of `soak_s`."""
        warm = soak_s * WARM_UP_SHARE
        after_warm_up = self.median_mb(warm - WINDOW_S, warm)
        at_end = self.median_mb(soak_s - WINDOW_S, soak_s)
        return after_warm_up, at_end, at_end - after_warm_up


@asynccontextmanager
async def sampling(pid: int) -> AsyncIterator[RssSamples]:
    """Sample `pid`'s RSS every SAMPLE_EVERY_S while the block runs."""
    process = psutil.Process(pid)
    samples = RssSamples()
    began = time.monotonic()

    async def sample() -> None:
        while True:
            samples.samples.append((time.monotonic() - began, process.memory_info().rss))
            await asyncio.sleep(SAMPLE_EVERY_S)

    sampler = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        sampler.cancel()
