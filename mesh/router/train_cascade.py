"""Choose how sure the static tier model must be to decide alone; numpy only.

    python -m mesh.router.train_cascade TRAIN.jsonl --fast mesh/router/data/tier_model_static.npz \
        --full mesh/router/data/tier_model.npz --cache /tmp/tier_emb.npz

The router asks the static model first (0.04 ms of embedding) and MiniLM's only where the static
estimate sits within `cascade_margin` (log-odds) of either of its two bounds. The margin is the
smallest of MARGIN_GRID at which the cascade, on the validation split of the training rows (the
same fixed split train_estimator.py holds out), sends no more tasks of any tier the wrong way
than MiniLM's model alone, within TOLERANCE. It is written into the static model's meta with
the cascade's validation figures and the share of prompts that still run MiniLM.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mesh.router.estimator_model import TierModel, model_text, structural
from mesh.router.train_estimator import (
    Example,
    choose,
    embed_cached,
    is_validation,
    load_rows,
    minilm_embed,
    predict,
    scores,
    static_embed,
)

MARGIN_GRID = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
TOLERANCE = 0.005  # half a point on each error rate: the noise of ~500 rows a tier
ERRORS = ("frontier_under", "medium_under", "small_over", "medium_over")
F64 = npt.NDArray[np.float64]


def probabilities(model: TierModel, emb: F64, rows: list[Example]) -> F64:
    struct = np.stack([structural(r.text, 1) for r in rows])
    return predict(model, np.concatenate([emb, (struct - model.struct_mean) / model.struct_std], 1))


def bounds(model: TierModel) -> tuple[float, float]:
    risk = float(str(model.meta["risk"]))
    return risk, float(str(model.meta.get("risk_frontier", risk)))


def margins(p: F64, risk: float, risk_frontier: float) -> F64:
    """Per row: log-odds distance of P(medium or above) and P(frontier) to their bounds."""
    above = np.clip(np.cumsum(p[:, ::-1], axis=1)[:, ::-1], 1e-6, 1 - 1e-6)

    def logit(q: F64 | float) -> F64:
        values: F64 = np.asarray(q, dtype=np.float64)
        out: F64 = np.log(values / (1 - values))
        return out

    near: F64 = np.minimum(
        np.abs(logit(above[:, 2]) - logit(risk_frontier)), np.abs(logit(above[:, 1]) - logit(risk))
    )
    return near


def choose_margin(
    p_fast: F64, p_full: F64, y: npt.NDArray[np.int64], fast: TierModel, full: TierModel
) -> tuple[float, dict[str, object]]:
    got_fast, got_full = choose(p_fast, *bounds(fast)), choose(p_full, *bounds(full))
    reference = scores(y, got_full)
    margin = margins(p_fast, *bounds(fast))
    grid: dict[str, object] = {}
    chosen: float | None = None
    for delta in MARGIN_GRID:
        clear = margin >= delta
        got = scores(y, np.where(clear, got_fast, got_full))
        got["minilm_share"] = round(float(1 - clear.mean()), 4)
        grid[str(delta)] = got
        if chosen is None and all(got[e] <= reference[e] + TOLERANCE for e in ERRORS):
            chosen = delta
    if chosen is None:
        raise SystemExit("no margin of the grid keeps the cascade as accurate as MiniLM alone")
    return chosen, {
        "minilm_alone": reference,
        "static_alone": scores(y, got_fast),
        "by_margin": grid,
        "cascade_margin": chosen,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Choose the static tier model's margin.")
    parser.add_argument("train", type=Path)
    parser.add_argument("--fast", type=Path, required=True, help="static tier model (rewritten)")
    parser.add_argument("--full", type=Path, required=True, help="MiniLM tier model")
    parser.add_argument("--cache", type=Path, help="npz of MiniLM embeddings (train_estimator's)")
    args = parser.parse_args(argv)
    rows = [r for r in load_rows(args.train) if is_validation(r.group)]
    fast, full = TierModel.load(args.fast), TierModel.load(args.full)
    texts = [model_text(r.text) for r in rows]
    p_fast = probabilities(fast, static_embed(texts).astype(np.float64), rows)
    p_full = probabilities(full, embed_cached(texts, minilm_embed, args.cache), rows)
    y = np.array([r.tier for r in rows], dtype=np.int64)
    margin, report = choose_margin(p_fast, p_full, y, fast, full)
    chosen = report["by_margin"]
    assert isinstance(chosen, dict)
    meta = {**fast.meta, "cascade_margin": margin, "cascade_validation": chosen[str(margin)]}
    replace(fast, meta=meta).save(args.fast)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
