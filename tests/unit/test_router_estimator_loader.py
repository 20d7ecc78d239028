"""The tier estimator is built once, when the catalogue first lets an estimate matter
(mesh/router/estimator_loader.py), and a request that needs it first waits for that build."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from mesh.config import ConfigError, EstimatorSettings
from mesh.contract.errors import Code
from mesh.router.breaker import BreakerBoard
from mesh.router.catalog import Catalog
from mesh.router.estimator_loader import (
    RETRY_AFTER_S,
    EstimatorLoader,
    EstimatorUnavailable,
    check_model_files,
)
from mesh.router.pipeline.plan import Planner
from mesh.router.policies import PolicySet
from mesh.router.tier_estimator import TierEstimator
from mesh.v1 import types_pb2 as t

SMALL = t.ModelCard(model_id="small-model", tier=t.MODEL_TIER_SMALL)
FRONTIER = t.ModelCard(model_id="big-model", tier=t.MODEL_TIER_FRONTIER)
QUESTION = [t.ChatMessage(role=t.ROLE_USER, content="Prove that sqrt(2) is irrational.")]


class CountingFactory:
    """Builds the structure-only estimator (no MiniLM), counting builds; can fail or block."""

    def __init__(self, fail: int = 0) -> None:
        self.builds = 0
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> TierEstimator:
        self.builds += 1
        self.release.wait(10)
        if self.fail:
            self.fail -= 1
            raise ValueError("model file unreadable")
        return TierEstimator(EstimatorSettings(embeddings=False))


async def test_concurrent_callers_share_one_build() -> None:
    factory = CountingFactory()
    factory.release.clear()
    loader = EstimatorLoader(factory)
    waiting = [asyncio.create_task(loader.get()) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert loader.loaded is None and not any(task.done() for task in waiting)
    factory.release.set()
    built = await asyncio.gather(*waiting)
    assert factory.builds == 1 and all(e is built[0] for e in built)
    assert loader.loaded is built[0] and await loader.get() is built[0]


async def test_a_failed_build_reaches_the_caller_and_the_next_call_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = CountingFactory(fail=1)
    loader = EstimatorLoader(factory)
    with pytest.raises(EstimatorUnavailable) as caught:
        await loader.get()
    # UNAVAILABLE with RetryInfo, the cause chained and logged once, never in the message
    error = caught.value
    assert error.code is Code.UNAVAILABLE and error.reason == "ESTIMATOR_UNAVAILABLE"
    assert error.retryable and error.retry_after_s == RETRY_AFTER_S
    assert isinstance(error.__cause__, ValueError) and "unreadable" not in error.message
    assert caplog.text.count("failed to load: ValueError: model file unreadable") == 1
    assert loader.loaded is None
    assert await loader.get() is loader.loaded is not None
    assert factory.builds == 2


async def test_a_caller_that_gives_up_leaves_the_build_going() -> None:
    factory = CountingFactory()
    factory.release.clear()
    loader = EstimatorLoader(factory)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(loader.get(), 0.05)
    factory.release.set()
    estimator = await loader.get()
    assert factory.builds == 1 and loader.loaded is estimator


async def test_warm_soon_builds_in_the_background_once(caplog: pytest.LogCaptureFixture) -> None:
    factory = CountingFactory(fail=1)
    loader = EstimatorLoader(factory)
    loader.warm_soon()
    loader.warm_soon()  # under way: not a second build
    await asyncio.sleep(0)
    for _ in range(500):
        if "failed to load" in caplog.text:
            break
        await asyncio.sleep(0.01)
    assert "failed to load" in caplog.text and loader.loaded is None  # logged, not raised
    loader.warm_soon()  # the failure is not remembered: tried again
    estimator = await loader.get()
    assert factory.builds == 2 and loader.loaded is estimator


def test_of_holds_a_built_estimator() -> None:
    estimator = TierEstimator(EstimatorSettings(embeddings=False))
    assert EstimatorLoader.of(estimator).loaded is estimator


def _planner(catalog: Catalog, factory: CountingFactory) -> Planner:
    return Planner(catalog, BreakerBoard(), PolicySet(), EstimatorLoader(factory))


async def test_a_one_tier_catalogue_never_builds_it_and_a_second_tier_does() -> None:
    catalog = Catalog()
    catalog.add_static("big-node", "127.0.0.1:2", [FRONTIER])
    factory = CountingFactory()
    planner = _planner(catalog, factory)
    cheapest = planner.policy_for("alice", t.RoutingHints())
    sampling = t.SamplingParams(max_tokens=16)
    plan = await planner.plan("alice", cheapest, QUESTION, sampling, t.RoutingHints())
    assert plan.route_request.estimate is None and factory.builds == 0
    catalog.add_static("small-node", "127.0.0.1:1", [SMALL])
    plan = await planner.plan("alice", cheapest, QUESTION, sampling, t.RoutingHints())
    assert plan.route_request.estimate is not None and factory.builds == 1


def test_the_catalogue_reports_each_change_of_cards() -> None:
    catalog = Catalog()
    seen: list[frozenset[int]] = []
    catalog.watch_tiers(seen.append)
    catalog.add_static("a", "127.0.0.1:1")
    catalog.set_cards("a", [FRONTIER])
    catalog.register("b", "127.0.0.1:2", [SMALL])
    catalog.mirror("c", "127.0.0.1:3", [SMALL], t.NodeLoad(), lease_digest=b"x", age_s=0)
    catalog.set_cards("missing", [SMALL])  # an unknown node changes nothing: no call
    small, frontier = t.MODEL_TIER_SMALL, t.MODEL_TIER_FRONTIER
    assert seen == [
        frozenset(),
        frozenset({frontier}),
        frozenset({small, frontier}),
        frozenset({small, frontier}),
    ]
    catalog.watch_tiers(None)
    catalog.set_cards("a", [SMALL])
    assert len(seen) == 4


def test_a_configured_model_file_that_is_missing_is_a_config_error(tmp_path: Path) -> None:
    check_model_files(EstimatorSettings())  # the shipped models: nothing configured
    present = tmp_path / "tier.npz"
    present.write_bytes(b"read when built")
    check_model_files(EstimatorSettings(struct_model_path=present))
    with pytest.raises(ConfigError, match=r"routing\.estimator\.static_model_path: .*missing"):
        check_model_files(EstimatorSettings(static_model_path=tmp_path / "missing.npz"))
