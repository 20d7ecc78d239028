"""The tier model file and the training path: integrity on load, deterministic training, the
fixed split, and a data card that names every source the shipped weights were fitted on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mesh.router.estimator_model import STRUCT_NAMES, TierModel, structural
from mesh.router.tier_estimate import TIERS
from mesh.router.tier_estimator import DATA, DEFAULT_MODEL, DEFAULT_STRUCT_MODEL
from mesh.router.train_estimator import (
    FRONTIER_RISK_GRID,
    RISK_GRID,
    Example,
    choose,
    is_validation,
    load_rows,
    scores,
    train,
)


def hashing_embed(texts: Sequence[str]) -> np.ndarray:
    """A fake embedder for the training logic (not MiniLM): a word-hash bag, unit length."""
    out = np.zeros((len(texts), 32), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, hashlib.sha256(word.encode()).digest()[0] % 32] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    result: np.ndarray = out / np.maximum(norms, 1e-6)
    return result


def _rows() -> list[Example]:
    rows = []
    for i in range(60):
        rows.append(Example(f"rewrite sentence number {i} politely", 0, "rewrite", "a", f"s{i}"))
        rows.append(Example(f"write sql join query for table {i}", 1, "sql", "b", f"m{i}"))
        rows.append(Example(f"prove theorem {i} about primes rigorously", 2, "proof", "c", f"f{i}"))
    return rows


@pytest.mark.parametrize("path", [DEFAULT_MODEL, DEFAULT_STRUCT_MODEL])
def test_shipped_weights_load_and_match_their_digest(path: Path) -> None:
    model = TierModel.load(path)
    assert model.weights.shape[0] == len(TIERS)
    assert model.width == model.dim + len(STRUCT_NAMES)
    # the full model has its hidden layer; the structure-only one is a softmax regression
    assert (model.hidden_weights is not None) == (path == DEFAULT_MODEL)
    assert 0 < float(model.meta["risk"]) < 1  # type: ignore[arg-type]
    assert model.meta["validation_rows"] and model.meta["train_rows"]


def test_a_changed_weight_is_refused(tmp_path: Path) -> None:
    with np.load(DEFAULT_STRUCT_MODEL, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["weights"] = arrays["weights"].copy()
    arrays["weights"][0, 0] += 0.5
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="sha256"):
        TierModel.load(bad)


def test_shipped_model_has_both_risk_bounds() -> None:
    meta = TierModel.load(DEFAULT_MODEL).meta
    risk, frontier = float(str(meta["risk"])), float(str(meta["risk_frontier"]))
    assert risk in RISK_GRID and frontier in FRONTIER_RISK_GRID and frontier <= risk


def test_data_card_names_every_source_of_the_shipped_model() -> None:
    card = (DATA / "tier_model.md").read_text()
    sources = TierModel.load(DEFAULT_MODEL).meta["sources"]
    assert isinstance(sources, dict) and sources
    for source in sources:
        assert f"`{source}`" in card, source
    assert "licence" in card.lower() and "split" in card.lower()


def test_training_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    rows = _rows()
    a, a_struct, report = train(rows, embed=hashing_embed, leave_source_out=False)
    b, _, _ = train(rows, embed=hashing_embed, leave_source_out=False)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    assert a.hidden_weights is not None and b.hidden_weights is not None
    assert np.array_equal(a.hidden_weights, b.hidden_weights)
    assert a_struct.hidden_weights is None
    assert a_struct.dim == 0 and a.dim == 32
    digest = a.save(tmp_path / "m.npz")
    loaded = TierModel.load(tmp_path / "m.npz")
    assert loaded.meta["sha256"] == digest
    text = "prove theorem 7 about primes rigorously"
    x = loaded.inputs(hashing_embed([text])[0], structural(text, 1))
    p = loaded.probabilities(x)
    assert int(np.argmax(p)) == 2 and abs(p.sum() - 1) < 1e-9
    full = report["full"]
    assert isinstance(full, dict) and full["risk"] in RISK_GRID
    assert full["risk_frontier"] in FRONTIER_RISK_GRID and full["risk"] >= full["risk_frontier"]
    assert a.meta["risk_frontier"] == full["risk_frontier"]


def test_split_is_fixed_by_group() -> None:
    groups = [f"g{i}" for i in range(2000)]
    held = [g for g in groups if is_validation(g)]
    assert held == [g for g in groups if is_validation(g)]  # the same on every call
    assert 0.10 < len(held) / len(groups) < 0.20


def test_risk_rule_and_rates() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.1, 0.2, 0.7]])
    assert choose(p, 0.35).tolist() == [0, 2, 2]
    assert choose(p, 0.25).tolist() == [1, 2, 2]
    # a frontier bound of its own: P(frontier) alone decides the frontier step
    assert choose(p, 0.35, 0.05).tolist() == [2, 2, 2]
    assert choose(p, 0.25, 0.5).tolist() == [1, 1, 2]
    assert choose(p, 0.5, 0.5).tolist() == [0, 0, 2]
    rates = scores(np.array([0, 2, 1]), np.array([0, 1, 2]))
    assert rates["frontier_under"] == 1.0 and rates["medium_over"] == 1.0


def test_rows_need_a_known_tier(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "x", "tier": "large"}) + "\n")
    with pytest.raises(ValueError, match=r"rows\.jsonl:1"):
        load_rows(path)


def test_pushes_are_gradient_times_input_and_exact_for_a_softmax_regression() -> None:
    rows = _rows()
    linear, _, _ = train(rows, embed=hashing_embed, leave_source_out=False, hidden=0)
    assert linear.hidden_weights is None
    text = "write sql join query for table 9"
    x = linear.inputs(hashing_embed([text])[0], structural(text, 1))
    pushes = linear.struct_contributions(x, 2, 1)
    expected = (linear.weights[2, linear.dim :] - linear.weights[1, linear.dim :]) * x[linear.dim :]
    assert np.allclose(pushes, expected)
    logit = np.log(linear.probabilities(x))
    total = linear.embedding_contribution(x, 2, 1) + pushes.sum()
    assert np.isclose(total + linear.bias[2] - linear.bias[1], logit[2] - logit[1])

    deep, _, _ = train(rows, embed=hashing_embed, leave_source_out=False)
    assert deep.hidden_weights is not None
    # a small step along a push's feature moves log p(upper) - log p(lower) by about its slope
    xd = deep.inputs(hashing_embed([text])[0], structural(text, 1))
    step = np.zeros_like(xd)
    step[deep.dim] = 1e-4
    lp = np.log(deep.probabilities(xd + step)) - np.log(deep.probabilities(xd))
    slope = deep.struct_contributions(xd, 2, 1)[0] / xd[deep.dim] if xd[deep.dim] else None
    if slope is not None:
        assert np.isclose((lp[2] - lp[1]) / 1e-4, slope, rtol=1e-2, atol=1e-4)


def test_a_hidden_layer_without_its_bias_is_refused(tmp_path: Path) -> None:
    """The digest is a checksum, not a signature: a file rewritten with a matching digest but
    half a hidden layer must still be refused, not crash at the first request."""
    rows = _rows()
    model, _, _ = train(rows, embed=hashing_embed, leave_source_out=False)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k not in ("meta", "hidden_bias")}
        meta = json.loads(str(data["meta"]))
    from mesh.router.estimator_model import _digest

    meta["sha256"] = _digest(arrays)
    np.savez(tmp_path / "half.npz", meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError, match="hidden layer"):
        TierModel.load(tmp_path / "half.npz")
