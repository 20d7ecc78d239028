"""route_eval metrics on a small in-test file (feature-only estimator: no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.config import EstimatorSettings
from mesh.router.route_eval import demo_cards, evaluate, load_labelled
from mesh.router.tier_estimator import TierEstimator

ROWS = [
    {"id": "1", "text": "What is the capital of Peru?", "tier": "small", "kind": "q"},
    {"id": "2", "text": "Fix the grammar: he go to school.", "tier": "small", "kind": "rw"},
    {
        "id": "3",
        "text": "Write a Python function that returns the longest palindromic substring "
        "of a string, and unit tests that it passes.",
        "tier": "frontier",
        "kind": "code",
    },
    # Labelled frontier but with no cue: the estimator sends it small (an under-route).
    {"id": "4", "text": "Name a colour.", "tier": "frontier", "kind": "trap"},
]


def test_evaluate_reports_rates_and_cost(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    rows = load_labelled(path)
    est = TierEstimator(EstimatorSettings(embeddings=False))
    out = evaluate(rows, demo_cards(), est, max_tokens=100)
    assert set(out) >= {"cost_ratio", "under_routing_rate", "over_routing_rate", "tier_share"}
    assert out["under_routing_rate"] == 0.25 and out["over_routing_rate"] == 0.0
    assert out["tier_share"] == {"frontier": 0.25, "small": 0.75}
    assert 0.2 < out["cost_ratio"] < 0.5
    assert out["by_kind"]["trap"]["under"] == 1


def test_bad_rows_fail_with_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "x", "tier": "small"}\n{"text": "y", "tier": "huge"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        load_labelled(path)
