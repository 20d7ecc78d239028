"""The tier estimator, built the first time the catalogue lets an estimate matter.

Why not at start-up: a router whose catalogue routes every tier alike (one tier, or requests
that pin their model) never asks for an estimate, yet building the estimator imports numpy and
loads its model files, 12-15 MB of a lean router's 113 MB idle RSS (measured with
benchmarks.fleet's lean config; target 90 MB). So the router builds it when its catalogue
first holds tiers that an estimate can tell apart (at start-up when the configured upstreams
already do, else in the background as soon as a node with another tier is learnt), and a
request that needs it before then waits for that one load instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from mesh.config import ConfigError, EstimatorSettings
from mesh.contract.errors import Code, MeshError

if TYPE_CHECKING:
    from mesh.router.tier_estimator import TierEstimator

log = logging.getLogger(__name__)

# A failed build is retried by the next request that needs an estimate, not at once.
RETRY_AFTER_S = 1.0


class EstimatorUnavailable(MeshError):
    """The tier estimator could not be built; a request that pins its model, or a policy that
    needs no estimate, is still served. The cause is in the router's log, not in the message:
    it names the router's files."""

    code = Code.UNAVAILABLE
    reason = "ESTIMATOR_UNAVAILABLE"
    retryable = True

    def __init__(self) -> None:
        super().__init__(
            "the router could not load its tier estimator; pin a model to be served "
            "without an estimate, or retry",
            retry_after_s=RETRY_AFTER_S,
        )


class EstimatorLoader:
    """Builds the estimator once (`factory`, in a worker thread), for every caller."""

    def __init__(self, factory: Callable[[], TierEstimator]) -> None:
        self._factory = factory
        self._estimator: TierEstimator | None = None
        self._lock = threading.Lock()  # one build, whichever thread or loop asks first
        self._pending: asyncio.Task[TierEstimator] | None = None

    @classmethod
    def of(cls, estimator: TierEstimator) -> EstimatorLoader:
        """A loader holding an estimator already built (tests, embedding programs)."""
        loader = cls(lambda: estimator)
        loader._estimator = estimator
        return loader

    @property
    def loaded(self) -> TierEstimator | None:
        """The estimator when built, else None (never builds)."""
        return self._estimator

    def build(self) -> TierEstimator:
        """The estimator, built and warmed on this thread if no one has yet (blocking)."""
        with self._lock:
            if self._estimator is None:
                try:
                    estimator = self._factory()
                    estimator.warm_up()
                except Exception as exc:
                    log.error("tier estimator failed to load: %s: %s", type(exc).__name__, exc)
                    raise
                self._estimator = estimator
                log.info("tier estimator loaded (embeddings: %s)", estimator.uses_embeddings)
            return self._estimator

    async def get(self) -> TierEstimator:
        """The estimator; the first callers wait for one build in a worker thread. A failed
        build raises EstimatorUnavailable to its waiters (logged once with its cause) and the
        next call builds again."""
        if self._estimator is not None:
            return self._estimator
        if self._pending is None or _failed(self._pending):
            self._pending = asyncio.ensure_future(asyncio.to_thread(self.build))
        try:
            # Shielded: a caller that gives up (deadline, cancelled stream) leaves it going.
            return await asyncio.shield(self._pending)
        except Exception as exc:
            raise EstimatorUnavailable() from exc

    def warm_soon(self) -> None:
        """Start the build in the background (the caller's loop) unless it is built or under
        way; a failure is logged by `build`, and the request that next needs it builds again."""
        if self._estimator is not None or (self._pending is not None and not self._pending.done()):
            return
        self._pending = asyncio.ensure_future(asyncio.to_thread(self.build))
        self._pending.add_done_callback(_retrieve_failure)


def check_model_files(settings: EstimatorSettings) -> None:
    """ConfigError for a configured model file that is not there: a deferred build must not
    hide a broken config until the day a second tier joins (read, not loaded: no numpy)."""
    for name in ("model_path", "struct_model_path", "static_model_path"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"routing.estimator.{name}: {path} is not a readable file")


def _failed(task: asyncio.Task[TierEstimator]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _retrieve_failure(task: asyncio.Task[TierEstimator]) -> None:
    """`build` logged the failure; retrieving it keeps asyncio from logging it again."""
    if not task.cancelled():
        task.exception()
