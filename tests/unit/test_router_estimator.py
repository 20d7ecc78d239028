"""Tier estimator on fixed inputs: features alone, and with the real MiniLM exemplar vote."""

from __future__ import annotations

import pytest

from mesh.config import EstimatorSettings
from mesh.router.embeddings import BatchingEmbedder
from mesh.router.tier_estimator import (
    DEFAULT_EXEMPLARS,
    TierEstimator,
    extract_features,
    load_exemplars,
)
from mesh.v1 import types_pb2 as t

SMALL, MEDIUM, FRONTIER = t.MODEL_TIER_SMALL, t.MODEL_TIER_MEDIUM, t.MODEL_TIER_FRONTIER

EASY = [
    "What is the capital of Peru?",
    "How do I kill a Python process?",
    "Rewrite this more politely: give me the file.",
    "Translate 'good morning' into German.",
]
HARD = [
    "Write a Python function that merges two sorted linked lists, with unit tests it must pass.",
    "```python\ndef parse(s):\n    return s.split(',')\n```\nFix this so quoted commas are "
    "kept and implement tests for it.",
    "Lisa buys 4 notebooks at $3 each and 2 pens at $1.25 each, then pays with a $20 bill. "
    "How much change does she get?",
]


def _user(text: str) -> list[t.ChatMessage]:
    return [t.ChatMessage(role=t.ROLE_USER, content=text)]


def test_features_see_code_math_and_depth() -> None:
    code = extract_features(_user(HARD[0]))
    math = extract_features(_user(HARD[2]))
    plain = extract_features(_user(EASY[0]))
    assert code.code > 0.5 and math.math > 0.5
    assert plain.code == plain.math == 0.0 and plain.hard_logit < code.hard_logit
    convo = [t.ChatMessage(role=t.ROLE_USER, content="hi")] * 12
    assert extract_features(convo).turns == 12


@pytest.mark.parametrize("text", EASY)
def test_feature_only_easy_is_small(text: str) -> None:
    est = TierEstimator(EstimatorSettings(embeddings=False)).estimate(_user(text))
    assert est.tier == SMALL and 0.5 <= est.confidence <= 1.0 and est.reason


@pytest.mark.parametrize("text", HARD)
def test_feature_only_hard_is_frontier(text: str) -> None:
    est = TierEstimator(EstimatorSettings(embeddings=False)).estimate(_user(text))
    assert est.tier == FRONTIER
    assert est.reason in {"code to write", "math word problem"}


def test_min_tier_raises_and_says_so() -> None:
    est = TierEstimator(EstimatorSettings(embeddings=False)).estimate(_user(EASY[0]), MEDIUM)
    assert est.tier == MEDIUM and "raised to min_tier medium" in est.reason


def test_shipped_exemplars_cover_every_tier() -> None:
    tiers = {e.tier for e in load_exemplars(DEFAULT_EXEMPLARS)}
    assert tiers == {1, 2, 3, 4}


def test_with_embeddings(minilm: BatchingEmbedder) -> None:
    est = TierEstimator(EstimatorSettings(), embedder=minilm)
    assert est.uses_embeddings
    for text in EASY:
        assert est.estimate(_user(text)).tier == SMALL, text
    for text in HARD:
        assert est.estimate(_user(text)).tier == FRONTIER, text
    probs = est.estimate(_user(HARD[0])).probabilities
    assert abs(sum(probs) - 1.0) < 1e-6
