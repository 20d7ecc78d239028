"""The static-first tier estimate: the static model decides where it is clear of its bounds,
MiniLM's decides the rest, with the shipped models and the real embedders; the margin chooser."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from mesh.config import EstimatorSettings
from mesh.embeddings.batching import BatchingEmbedder, Vector
from mesh.embeddings.static import StaticEmbedder, shared_static_embedder
from mesh.router import tier_estimator
from mesh.router.tier_estimator import DEFAULT_FAST_MODEL, TierEstimator, load_model
from mesh.router.train_cascade import choose_margin, margins
from mesh.router.train_estimator import choose
from mesh.v1 import types_pb2 as t

PROMPTS = [
    "What is the capital of Peru?",
    "Write a short poem about the sea.",
    "Prove that sqrt(2) is irrational.",
    "Write a Python function that returns the second largest number in a list.",
    "A train leaves at 3 pm at 60 km/h and another at 4 pm at 80 km/h; when does the second "
    "catch up, and how far have they gone?",
]


class CountingEmbedder:
    """The real MiniLM, counting the texts it is asked to embed."""

    def __init__(self, inner: BatchingEmbedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> Vector:
        self.texts += len(texts)
        return self.inner.embed(texts)


def _user(text: str) -> list[t.ChatMessage]:
    return [t.ChatMessage(role=t.ROLE_USER, content=text)]


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return shared_static_embedder("mean+max")


def _cascade(
    minilm: BatchingEmbedder, static: StaticEmbedder, margin: float | None = None
) -> tuple[TierEstimator, CountingEmbedder]:
    counting = CountingEmbedder(minilm)
    fast = load_model(DEFAULT_FAST_MODEL)
    if margin is not None:
        fast = replace(fast, meta={**fast.meta, "cascade_margin": margin})
    estimator = TierEstimator(
        EstimatorSettings(), embedder=counting, fast_embedder=static, fast_model=fast
    )
    return estimator, counting


def test_a_clear_routine_question_never_runs_minilm(
    minilm: BatchingEmbedder, static: StaticEmbedder
) -> None:
    estimator, counting = _cascade(minilm, static)
    assert estimator.static_first and estimator.cascade_margin > 0
    est = estimator.estimate(_user("What is the capital of Peru?"))
    assert est.tier == t.MODEL_TIER_SMALL and est.decided_by == "static"
    assert est.reason.startswith("P(above small)")
    assert est.reason.endswith("; static model, clear of both bounds")
    nearest = est.reason.split("nearest training tasks: ")[1].split(";")[0]
    cosines = [float(part.rsplit(" ", 1)[1]) for part in nearest.split(", ")]
    assert all(0 < c <= 1 for c in cosines), nearest  # mean+max vectors have norm sqrt(2)
    assert counting.texts == 0


def test_an_unsure_static_estimate_is_decided_by_minilm_exactly(
    minilm: BatchingEmbedder, static: StaticEmbedder
) -> None:
    """A margin no estimate reaches: every prompt goes to MiniLM's model, with the estimate
    MiniLM's model alone gives."""
    cascade, counting = _cascade(minilm, static, margin=1e9)
    alone = TierEstimator(EstimatorSettings(), embedder=minilm)
    for text in PROMPTS:
        got, want = cascade.estimate(_user(text)), alone.estimate(_user(text))
        assert (got.tier, got.probabilities, got.decided_by) == (
            want.tier,
            want.probabilities,
            "MiniLM",
        )
    assert counting.texts == len(PROMPTS)
    assert got.reason == f"{want.reason}; MiniLM model (the static estimate was near a bound)"


def test_margin_zero_is_the_static_model_alone(
    minilm: BatchingEmbedder, static: StaticEmbedder
) -> None:
    estimator, counting = _cascade(minilm, static, margin=0.0)
    assert {estimator.estimate(_user(p)).decided_by for p in PROMPTS} == {"static"}
    assert counting.texts == 0


def test_shipped_cascade_sends_proofs_up_and_the_async_path_agrees(
    minilm: BatchingEmbedder, static: StaticEmbedder
) -> None:
    estimator, _ = _cascade(minilm, static)
    proof = estimator.estimate(_user(PROMPTS[2]))
    assert proof.tier == t.MODEL_TIER_FRONTIER, proof.reason
    for text in PROMPTS:
        sync = estimator.estimate(_user(text))
        assert asyncio.run(estimator.aestimate(_user(text))) == sync


def test_a_static_model_without_a_margin_or_of_other_vectors_is_refused(
    minilm: BatchingEmbedder, static: StaticEmbedder
) -> None:
    fast = load_model(DEFAULT_FAST_MODEL)
    no_margin = replace(fast, meta={k: v for k, v in fast.meta.items() if k != "cascade_margin"})
    other = replace(fast, meta={**fast.meta, "embedding": "minilm-int8"})
    for model in (no_margin, other):
        with pytest.raises(ValueError, match="cascade_margin"):
            TierEstimator(
                EstimatorSettings(), embedder=minilm, fast_embedder=static, fast_model=model
            )


def test_the_structure_only_estimate_ignores_the_static_model(static: StaticEmbedder) -> None:
    estimator = TierEstimator(EstimatorSettings(embeddings=False), fast_embedder=static)
    assert not estimator.static_first
    assert estimator.estimate(_user(PROMPTS[0])).decided_by == "structure"


def test_router_and_trainer_measure_the_margin_alike() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=200)
    fast = load_model(DEFAULT_FAST_MODEL)
    stage = tier_estimator._Stage(fast, 0.45, 0.1, "static")
    ours = np.array([tier_estimator._margin(row, stage) for row in p])
    assert np.allclose(ours, margins(p, 0.45, 0.1))


def test_the_margin_chooser_escalates_what_the_static_model_gets_wrong() -> None:
    """Synthetic validation rows: MiniLM's model always right; the static one right where it is
    sure and wrong near its bounds, so a margin must send those rows to MiniLM."""
    fast = load_model(DEFAULT_FAST_MODEL)
    full = replace(fast, meta={**fast.meta, "risk": 0.45, "risk_frontier": 0.1})
    fast = replace(fast, meta={**fast.meta, "risk": 0.45, "risk_frontier": 0.1})
    y = np.array([0, 1, 2] * 40)
    sure = np.eye(3)[y] * 0.98 + 0.01
    p_fast = sure.copy()
    p_fast[::3] = [0.5, 0.45, 0.05]  # small rows near the small/medium bound: sent to medium
    p_full = sure
    assert choose(p_fast, 0.45, 0.1)[0] == 1 and choose(p_full, 0.45, 0.1)[0] == 0
    margin, report = choose_margin(p_fast, p_full, y, fast, full)
    assert margin > 0
    chosen = report["by_margin"][str(margin)]  # type: ignore[index]
    assert chosen["small_over"] == 0.0 and chosen["minilm_share"] == pytest.approx(1 / 3, 0.01)
    # Wrong and sure: no margin helps, and the chooser says so instead of shipping it.
    wrong = np.eye(3)[(y + 1) % 3] * 0.98 + 0.01
    with pytest.raises(SystemExit, match="no margin"):
        choose_margin(wrong, p_full, y, fast, full)
