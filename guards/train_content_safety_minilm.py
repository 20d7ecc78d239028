"""Train the MiniLM content-safety model (guards/data/content_safety_minilm.npz).

The rows of the n-gram model (guards/train_content_safety.py: the dev set's `train` half,
AILuminate, SimpleSafetyTests, ordinary requests, the handwritten look-alikes) plus AdvBench's
harmful behaviours, each embedded with the kernel's MiniLM (int8, as the guard runs it). Then:
- harm: logistic regression (L2, Newton steps in numpy) on the 384-d vector, look-alike safe
  requests (handwritten `benign_hard`, the training half's XSTest-safe) weighted LOOKALIKE_WEIGHT;
- categories: one-vs-rest logistic regression per category, on harmful rows that have one.

Rows are judged as the guard judges a text (the highest score of its windows: the whole text if
short, and each sentence). The threshold is the lowest that keeps out-of-fold false positives on
the look-alikes under LOOKALIKE_FP_TARGET and on every other benign source under FP_TARGET: chosen
on training rows only. The figures printed at the end are on the dev set's held-out half and on the
GPTFuzz questions, neither ever trained or tuned on.

Usage: python -m guards.train_content_safety_minilm [--dev PATH] [--corpora DIR] [--out PATH]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards import public_corpora
from guards.detectors.content_safety import (
    EMBEDDING_PRECISION,
    MINILM_MODEL_PATH,
    WINDOW_CHARS,
    windows,
)
from guards.detectors.content_safety_settings import CATEGORIES
from guards.dev_split import rows_in
from guards.train_common import (
    Row,
    cut_for,
    drop_near_copies,
    read_jsonl,
    rounded_up,
    trainer_parser,
)
from guards.train_content_safety import training_rows

Matrix = npt.NDArray[np.float64]
# The bar is <= 2 % on XSTest-safe at >= 0.80 recall; out of fold, 2 % on the few
# training look-alikes left the held-out recall near 0.35, so the threshold trades 10 % there.
LOOKALIKE_FP_TARGET = 0.10
FP_TARGET = 0.02
LOOKALIKE_WEIGHT = 3.0
L2 = 1.0  # on the summed weighted loss (scikit-learn's C = 1)


def fit_logistic(
    x: Matrix, y: Sequence[float], weights: Sequence[float] | None = None, l2: float = L2
) -> tuple[Matrix, float]:
    """Weighted L2 logistic regression by Newton's method (385 unknowns: exact in ~10 steps)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    t = np.asarray(y, dtype=np.float64)
    s = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # the bias is not shrunk
    w = np.zeros(d + 1)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (s * (p - t)) + reg * w
        hess = (xb * (s * p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def predict(x: Matrix, w: Matrix, b: float) -> Matrix:
    out: Matrix = 1.0 / (1.0 + np.exp(-np.clip(x @ w + b, -30, 30)))
    return out


def out_of_fold(
    x: Matrix, y: Sequence[float], weights: Sequence[float], judged: Judged, folds: int = 5
) -> Matrix:
    """Each training row scored as the guard scores it (its highest window) by a model fitted
    on the other folds: the threshold is chosen on these."""
    out = np.zeros(len(y))
    idx = np.arange(len(y))
    for k in range(folds):
        held, kept = idx[idx % folds == k], idx[idx % folds != k]
        w, b = fit_logistic(x[kept], [y[i] for i in kept], [weights[i] for i in kept])
        out[held] = judged.scores(w, b)[held]
    return out


class Judged:
    """Every row's windows (guards.detectors.content_safety.windows, or the guard's own `cut`)
    embedded once: a window shared by rows is embedded once."""

    def __init__(
        self,
        texts: Sequence[str],
        cut: Callable[[str], list[str]] = windows,
        encoder: Path | None = None,
    ) -> None:
        per_row = [cut(t) or [t] for t in texts]
        unique = sorted({w for ws in per_row for w in ws})
        at = {w: i for i, w in enumerate(unique)}
        self.vectors = embed(unique, encoder)
        self.rows = [[at[w] for w in ws] for ws in per_row]

    def scores(self, w: Matrix, b: float) -> Matrix:
        window_scores = predict(self.vectors, w, b)
        return np.array([window_scores[ix].max() for ix in self.rows])


def is_lookalike(row: Row) -> bool:
    return row.get("category") == "benign_hard" or row["source"] == "xstest_safe"


def choose_threshold(rows: list[Row], oof: Matrix) -> float:
    benign: dict[str, list[float]] = defaultdict(list)
    for row, score in zip(rows, oof, strict=True):
        if row["label"] == "benign":
            benign["lookalike" if is_lookalike(row) else row["source"]].append(float(score))
    threshold = 0.5
    for key, values in benign.items():
        target = LOOKALIKE_FP_TARGET if key == "lookalike" else FP_TARGET
        threshold = max(threshold, cut_for(values, target))
    return rounded_up(min(threshold, 0.995), 4)


def embed(texts: Sequence[str], encoder: Path | None = None) -> Matrix:
    """Each text's vector as the guard computes it (one text per int8 run); `encoder`: the
    `tuned` model's layers in place (content_safety.ENCODER_PATH)."""
    from mesh.embeddings.batching import shared_embedder
    from mesh.embeddings.text import embedding_text

    embedder = shared_embedder(EMBEDDING_PRECISION, overlay=encoder)
    return np.stack([embedder.embed([embedding_text(t)])[0] for t in texts]).astype(np.float64)


def minilm_training_rows(dev: list[Row], corpora: Path) -> list[Row]:
    """The n-gram model's rows plus AdvBench's harmful behaviours (near-copies of reported rows
    dropped): what the MiniLM model, and the static pass in front of it, are fitted on."""
    rows, reported = training_rows(dev, corpora)
    return rows + drop_near_copies(public_corpora.advbench(corpora), reported)


def main() -> None:
    parser = trainer_parser(__doc__, MINILM_MODEL_PATH)
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = minilm_training_rows(dev, args.corpora)
    print_counts(rows)

    # Fitted on each row's opening window (rows are prompts of a sentence or a few), judged
    # as the guard judges: the highest of its windows.
    x = embed([r["text"][:WINDOW_CHARS] for r in rows])
    y = [float(r["label"] == "harmful") for r in rows]
    weights = [LOOKALIKE_WEIGHT if is_lookalike(r) else 1.0 for r in rows]
    judged = Judged([r["text"] for r in rows])
    threshold = choose_threshold(rows, out_of_fold(x, y, weights, judged))
    w, b = fit_logistic(x, y, weights)
    print(f"threshold {threshold} (out-of-fold, training rows only)")

    save_model(args.out, x, rows, (w, b), threshold)
    report(dev, args.corpora, w, b, threshold)


def print_counts(rows: list[Row]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[f"{r['label']}/{r['source']}"] += 1
    print("training rows:", dict(sorted(counts.items())))


def save_model(
    out: Path, x: Matrix, rows: list[Row], harm: tuple[Matrix, float], threshold: float
) -> None:
    """The model file: the harm regression and its threshold, and one-vs-rest category
    regressions fitted on the rows' vectors `x` of the harmful rows that have a category."""
    harmful = [i for i, r in enumerate(rows) if r.get("category") in CATEGORIES]
    cat_w = np.zeros((len(CATEGORIES), x.shape[1]), dtype=np.float32)
    cat_b = np.zeros(len(CATEGORIES), dtype=np.float32)
    for k, category in enumerate(CATEGORIES):
        labels = [float(rows[i]["category"] == category) for i in harmful]
        cw, cb = fit_logistic(x[harmful], labels)
        cat_w[k], cat_b[k] = cw, cb
    np.savez_compressed(
        out,
        weights=harm[0].astype(np.float32),
        bias=np.asarray([harm[1]], dtype=np.float32),
        threshold=np.asarray([threshold], dtype=np.float32),
        category_weights=cat_w,
        category_bias=cat_b,
    )
    print(f"wrote {out}")


def print_flagged(rows: list[Row], scores: Matrix, threshold: float) -> None:
    """Per `label/source`: how many rows score at or above the threshold."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for row, score in zip(rows, scores, strict=True):
        groups[f"{row['label']}/{row['source']}"].append(bool(score >= threshold))
    print("held out (never trained or tuned on): flagged")
    for key, flags in sorted(groups.items()):
        print(f"  {key:36s} {sum(flags)}/{len(flags)} = {sum(flags) / len(flags):.3f}")


def heldout_rows(dev: list[Row], corpora: Path) -> list[Row]:
    """The rows content safety is scored on and never trained or tuned on: the dev set's
    held-out harmful and benign rows, and the GPTFuzz questions."""
    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"harmful", "benign"}]
    _, gptfuzz_harmful = public_corpora.gptfuzz(corpora)
    return held + gptfuzz_harmful


def report(dev: list[Row], corpora: Path, w: Matrix, b: float, threshold: float) -> None:
    rows = heldout_rows(dev, corpora)
    print_flagged(rows, Judged([r["text"] for r in rows]).scores(w, b), threshold)


if __name__ == "__main__":
    main()
