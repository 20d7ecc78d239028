"""The shipped tier model with the real MiniLM: tiers on prompts unlike its training rows, true
reasons, determinism, bounded work on huge prompts; and the structure-only model."""

from __future__ import annotations

import pytest

from mesh.config import EstimatorSettings
from mesh.embeddings.batching import BatchingEmbedder
from mesh.embeddings.text import MAX_EMBEDDED_CHARS
from mesh.router.estimator_model import FEATURE_CHARS, bounded, model_text, structural
from mesh.router.tier_estimator import TierEstimator
from mesh.v1 import types_pb2 as t

SMALL, MEDIUM, FRONTIER = t.MODEL_TIER_SMALL, t.MODEL_TIER_MEDIUM, t.MODEL_TIER_FRONTIER

# Written for this test, none from a training source: routine asks, however worded.
EASY = [
    "What is the capital of Peru?",
    "How do I kill a Python process?",
    "Rewrite this more politely: give me the file.",
    "Write a short poem about the sea.",
    "wat year did the berlin wall come down",
]
HARD = [
    "Prove that sqrt(2) is irrational.",
    "Prove that there are infinitely many primes congruent to 3 mod 4.",
    "How many ways can 8 non-attacking rooks be placed on a chessboard so that none is on "
    "the main diagonal? Justify the count.",
]
LONG_EASY = (
    "Summarise this paragraph in one sentence:\n\n"
    + "The town council met on Tuesday to discuss the new library opening hours. "
    "Residents asked for later evening hours and weekend access, and the council agreed "
    "to trial both for three months before deciding. " * 6
)


def _user(text: str) -> list[t.ChatMessage]:
    return [t.ChatMessage(role=t.ROLE_USER, content=text)]


@pytest.fixture(scope="module")
def estimator(minilm: BatchingEmbedder) -> TierEstimator:
    return TierEstimator(EstimatorSettings(), embedder=minilm)


@pytest.mark.parametrize("text", [*EASY, LONG_EASY])
def test_routine_work_stays_small(estimator: TierEstimator, text: str) -> None:
    est = estimator.estimate(_user(text))
    assert est.tier == SMALL, (text, est.reason)
    assert 0.5 <= est.confidence <= 1.0


@pytest.mark.parametrize("text", HARD)
def test_proofs_and_hard_counts_go_to_frontier(estimator: TierEstimator, text: str) -> None:
    est = estimator.estimate(_user(text))
    assert est.tier == FRONTIER, (text, est.reason)


def test_simple_code_is_not_left_on_the_small_tier(estimator: TierEstimator) -> None:
    text = "Write a Python function that returns the second largest number in a list."
    assert estimator.estimate(_user(text)).tier >= MEDIUM


def test_reason_names_the_evidence_not_a_category(estimator: TierEstimator) -> None:
    est = estimator.estimate(_user("Write a short poem about the sea."))
    small, medium, _, frontier = est.probabilities
    assert f"{small:.2f}/{medium:.2f}/{frontier:.2f}" in est.reason
    assert "vs risk" in est.reason and "nearest training tasks:" in est.reason
    assert "factual" not in est.reason and "question" not in est.reason
    hard = estimator.estimate(_user(HARD[0]))
    assert "toward frontier" in hard.reason and "wording (MiniLM)" in hard.reason


def test_probabilities_are_a_distribution_with_no_large_class(estimator: TierEstimator) -> None:
    probs = estimator.estimate(_user(HARD[1])).probabilities
    assert abs(sum(probs) - 1.0) < 1e-6 and probs[2] == 0.0


def test_same_prompt_same_estimate_across_instances(minilm: BatchingEmbedder) -> None:
    a = TierEstimator(EstimatorSettings(), embedder=minilm).estimate(_user(LONG_EASY))
    b = TierEstimator(EstimatorSettings(), embedder=minilm).estimate(_user(LONG_EASY))
    assert a == b


def test_min_tier_raises_and_says_so(estimator: TierEstimator) -> None:
    est = estimator.estimate(_user(EASY[0]), MEDIUM)
    assert est.tier == MEDIUM and "raised to min_tier medium" in est.reason


async def test_aestimate_matches_estimate(estimator: TierEstimator) -> None:
    assert await estimator.aestimate(_user(HARD[0])) == estimator.estimate(_user(HARD[0]))


def test_a_huge_prompt_is_read_only_at_its_ends(estimator: TierEstimator) -> None:
    ask = "\n\nWhat is the capital of France?"
    huge = "lorem ipsum dolor sit amet " * 200_000 + ask  # 5.4 MB
    assert len(bounded(huge)) <= FEATURE_CHARS + 1
    assert len(model_text(huge)) <= MAX_EMBEDDED_CHARS
    # Every feature but the length comes from the bounded text alone.
    assert (structural(huge, 1)[1:] == structural(bounded(huge), 1)[1:]).all()
    assert structural(huge, 1)[0] > structural(bounded(huge), 1)[0]  # the length is the real one
    est = estimator.estimate(_user(huge))
    assert est.tier in (SMALL, MEDIUM, FRONTIER) and est == estimator.estimate(_user(huge))


def test_structure_only_model_needs_no_embedder() -> None:
    est = TierEstimator(EstimatorSettings(embeddings=False))
    assert not est.uses_embeddings and est.model.dim == 0
    out = est.estimate(_user("What is the capital of Peru?"))
    # Structure alone is weak evidence: it leans small but its risk bound sends doubt upward.
    assert out.probabilities[0] > 0.5 and "nearest training tasks" not in out.reason
    code = "```python\ndef f(x):\n    return x\n```\nMake this handle lists of any depth."
    assert est.estimate(_user(code)).probabilities[0] < out.probabilities[0]


def test_a_model_of_another_width_is_refused(minilm: BatchingEmbedder) -> None:
    struct_only = TierEstimator(EstimatorSettings(embeddings=False)).model
    with pytest.raises(ValueError, match="expects 0-d embeddings"):
        TierEstimator(EstimatorSettings(), embedder=minilm, model=struct_only)


def test_frontier_step_has_its_own_risk_bound(minilm: BatchingEmbedder) -> None:
    """`risk_frontier` in the model's meta bounds P(frontier) alone; `risk` bounds P(medium or
    frontier); a configured underroute_risk sets both."""
    from dataclasses import replace

    base = TierEstimator(EstimatorSettings(), embedder=minilm).model
    text = HARD[0]

    def tier(meta: dict[str, object], settings: EstimatorSettings | None = None) -> int:
        model = replace(base, meta={**base.meta, **meta})
        est = TierEstimator(settings or EstimatorSettings(), embedder=minilm, model=model)
        return est.estimate(_user(text)).tier

    # P(frontier) over its bound goes up even when the small/medium bound is lax
    assert tier({"risk": 0.999, "risk_frontier": 1e-6}) == FRONTIER
    # P(frontier) under its bound, P(medium or frontier) over the other: medium
    assert tier({"risk": 1e-6, "risk_frontier": 0.999999}) == MEDIUM
    assert tier({"risk": 0.999999, "risk_frontier": 0.999999}) == SMALL
    # a configured risk replaces both bounds
    lax = EstimatorSettings(underroute_risk=0.999999)
    assert tier({"risk": 1e-6, "risk_frontier": 1e-6}, lax) == SMALL
    # a model without risk_frontier uses its one risk for both steps
    assert tier({"risk": 1e-6, "risk_frontier": None}) == FRONTIER
