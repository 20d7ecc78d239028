"""Worker threads for guard checks that leave the event loop, apart from asyncio's default executor.

Why: a check still running at its deadline cannot be stopped in a thread (only the wait is cut).
On the shared default executor a run of hostile texts that each outlive a CPU-heavy guard's
deadline filled every worker and starved what queued behind them: the semantic cache lookup, and
policy reloads, which is how an operator switches the slow guard off. Here guards have workers of
their own, and each guard may leave at most `overrun_limit` checks running past their deadline;
past that its calls fail at once (its `on_error` decides, as for a timeout) until one of them
ends, so one slow guard never holds the workers the others need. A check whose deadline passes
while it still waits for a worker is withdrawn and never runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from guards.errors import GuardFailure

T = TypeVar("T")

# Enough for every CPU-heavy guard of a chain to run at once (the default chain has two or
# three), on any machine size; the GIL makes more threads than that no faster.
WORKERS = max(8, (os.cpu_count() or 1) + 4)
# Checks one guard may leave running past their deadline; WORKERS - 2 * this stays free for the
# others even when two guards are stuck at once.
OVERRUN_LIMIT = 2


class CheckThreads:
    """A bounded pool with a per-guard count of checks still running past their deadline."""

    def __init__(self, workers: int = WORKERS, overrun_limit: int = OVERRUN_LIMIT) -> None:
        self.workers = workers
        self.overrun_limit = overrun_limit
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._overrunning: dict[str, int] = {}

    def overrunning(self, guard: str) -> int:
        """Checks of `guard` still running after their deadline passed."""
        with self._lock:
            return self._overrunning.get(guard, 0)

    def _submit(self, call: Callable[[], T]) -> Future[T]:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="guard-check")
            executor = self._executor
        # The caller's context goes along (as asyncio.to_thread does): a guard's own spans in
        # its worker nest under the chain's span.
        return executor.submit(contextvars.copy_context().run, call)

    async def run(self, call: Callable[[], T]) -> T:
        """`call()` in a worker, awaited without a deadline (fast guards on long texts)."""
        return await asyncio.wrap_future(self._submit(call))

    async def run_until(self, guard: str, call: Callable[[], T], timeout_s: float) -> T:
        """`call()` in a worker; TimeoutError at the deadline, GuardFailure while overloaded."""
        held = self.overrunning(guard)
        if held >= self.overrun_limit:
            raise GuardFailure(
                f"{held} earlier checks still running past their deadline", "overloaded"
            )
        future = self._submit(call)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            # wait_for cancelled the wrapper, which withdrew the check if no worker had taken it.
            if not future.cancel() and not future.done():
                self._count_until_done(guard, future)
            raise

    def _count_until_done(self, guard: str, future: Future[T]) -> None:
        with self._lock:
            self._overrunning[guard] = self._overrunning.get(guard, 0) + 1

        def release(_: Future[T]) -> None:
            with self._lock:
                left = self._overrunning[guard] - 1
                if left:
                    self._overrunning[guard] = left
                else:
                    del self._overrunning[guard]

        future.add_done_callback(release)  # runs at once if it finished meanwhile


# One pool per process: guards of every policy version share it, so a policy reload does not
# forget the checks the old chains left running.
CHECK_THREADS = CheckThreads()
