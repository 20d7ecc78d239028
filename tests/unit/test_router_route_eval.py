"""route_eval metrics on a small in-test file: rates, by_tier, confusion, traps, catalogues.

The estimators here are real TierEstimators over hand-set structure-only models that always
answer one tier (test models, not trained), so every expected count is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mesh.config import EstimatorSettings, Tier
from mesh.router.estimator_model import STRUCT_NAMES, TierModel
from mesh.router.route_eval import demo_cards, evaluate, load_labelled
from mesh.router.tier_estimate import TIERS
from mesh.router.tier_estimator import TierEstimator

ROWS = [
    {"id": "1", "text": "What is the capital of Peru?", "tier": "small", "kind": "q", "trap": "x"},
    {"id": "2", "text": "Fix the grammar: he go to school.", "tier": "small", "kind": "rw"},
    {"id": "3", "text": "Write a SQL join of a and b.", "tier": "medium", "kind": "sql"},
    {
        "id": "4",
        "text": "Prove there are infinitely many primes.",
        "tier": "frontier",
        "kind": "proof",
        "trap": "short_hard",
    },
]


def always(tier: str) -> TierEstimator:
    """An estimator whose (hand-set) model gives `tier` probability 0.98 for any input."""
    bias = np.full(len(TIERS), -2.0)
    bias[TIERS.index(tier)] = 2.0
    n = len(STRUCT_NAMES)
    model = TierModel(
        np.zeros((len(TIERS), n)),
        bias,
        np.zeros(n),
        np.ones(n),
        (),
        (),
        np.zeros((0, 0)),
        {"risk": 0.3},
    )
    return TierEstimator(EstimatorSettings(embeddings=False), model=model)


@pytest.fixture
def rows(tmp_path: Path) -> list:  # type: ignore[type-arg]
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return load_labelled(path)


def test_demo_catalogue_has_three_priced_tiers() -> None:
    cards = demo_cards()
    assert [c.tier for c in cards] == [Tier.SMALL.proto, Tier.MEDIUM.proto, Tier.FRONTIER.proto]
    prices = [c.output_price_per_mtok for c in cards]
    assert prices == sorted(prices) and len(set(prices)) == 3


def test_all_small_under_routes_exactly_the_harder_rows(rows: list) -> None:  # type: ignore[type-arg]
    out = evaluate(rows, demo_cards(), always("small"), max_tokens=100)
    assert out["under_routing_rate"] == 0.5 and out["over_routing_rate"] == 0.0
    assert out["tier_share"] == {"small": 1.0}
    assert out["by_tier"]["frontier"] == {
        "n": 1,
        "under": 1,
        "over": 0,
        "sent": {"small": 1},
        "under_rate": 1.0,
        "over_rate": 0.0,
    }
    assert out["by_tier"]["medium"]["under"] == 1 and out["by_tier"]["small"]["n"] == 2
    assert out["confusion"] == {
        "small": {"small": 2},
        "medium": {"small": 1},
        "frontier": {"small": 1},
    }
    assert out["by_trap"]["short_hard"] == {
        "n": 1,
        "correct": 0,
        "under": 1,
        "over": 0,
        "accuracy": 0.0,
    }
    assert out["by_trap"]["x"]["accuracy"] == 1.0
    assert 0 < out["cost_ratio"] < 0.05  # SmolLM2 is ~250x cheaper than the frontier card


def test_all_frontier_costs_exactly_always_frontier(rows: list) -> None:  # type: ignore[type-arg]
    out = evaluate(rows, demo_cards(), always("frontier"), max_tokens=100)
    assert out["cost_ratio"] == 1.0 and out["under_routing_rate"] == 0.0
    assert out["by_tier"]["small"]["over"] == 2 and out["by_tier"]["medium"]["over"] == 1


def test_a_catalogue_without_frontier_sends_frontier_work_to_its_best(rows: list) -> None:  # type: ignore[type-arg]
    two = [c for c in demo_cards() if c.tier != Tier.FRONTIER.proto]
    out = evaluate(rows, two, always("frontier"), max_tokens=100)
    assert out["tier_share"] == {"medium": 1.0}
    assert out["by_tier"]["frontier"]["under"] == 1  # it was sent lower than it needs
    assert out["cost_ratio"] == 1.0  # "always frontier" is the catalogue's top tier here


def test_bad_rows_fail_with_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "x", "tier": "small"}\n{"text": "y", "tier": "huge"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        load_labelled(path)
