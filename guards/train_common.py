"""What the guard trainers share: reading rows, a hashed n-gram logistic regression, scores
out of fold (to tune thresholds without touching held-out rows), and dropping training texts
that are near-copies of rows a figure is reported on."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guards.detectors.injection_features import DIMENSIONS, sorted_features

# The guards' development set, beside the project folder (../shared), as every trainer reads it.
SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
DEFAULT_DEV = SHARED_EVAL / "guards" / "injection_dev.jsonl"


def trainer_parser(doc: str | None, out: Path) -> argparse.ArgumentParser:
    """The flags every guard trainer takes: --dev (the shared dev set, whose `train` half is
    read), --corpora (the fetched public corpora) and --out (the model file)."""
    from guards import public_corpora

    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--corpora", type=Path, default=public_corpora.default_root())
    parser.add_argument("--out", type=Path, default=out)
    return parser


Row = dict[str, Any]
_WORDS = re.compile(r"[a-z0-9']+")


def read_jsonl(path: Path) -> list[Row]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def fit(
    texts: Sequence[str],
    labels: Sequence[float],
    *,
    l2: float = 1e-4,
    epochs: int = 400,
    lr: float = 0.5,
    weights: Sequence[float] | None = None,
    dimensions: int = DIMENSIONS,
) -> tuple[npt.NDArray[np.float32], float]:
    """L2-regularised logistic regression on binary hashed uni+bigrams, class-balanced,
    full-batch gradient descent in numpy (a few seconds for thousands of rows)."""
    rows_idx = [np.array(sorted_features(t), dtype=np.int64) % dimensions for t in texts]
    row_of = np.concatenate([np.full(len(ix), i) for i, ix in enumerate(rows_idx)])
    cols = np.concatenate(rows_idx)
    y = np.asarray(labels, dtype=np.float64)
    pos = y.sum()
    sample_w = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos)))
    if weights is not None:
        sample_w = sample_w * np.asarray(weights, dtype=np.float64)
    w = np.zeros(dimensions)
    b = 0.0
    n = len(y)
    for _ in range(epochs):
        z = np.bincount(row_of, weights=w[cols], minlength=n) + b
        p = 1 / (1 + np.exp(-z))
        err = (p - y) * sample_w / n
        grad = np.bincount(cols, weights=err[row_of], minlength=dimensions) + l2 * w
        w -= lr * 20 * grad
        b -= lr * err.sum()
    return w.astype(np.float32), b


def scores(w: npt.NDArray[np.float32], b: float, texts: Iterable[str]) -> npt.NDArray[np.float64]:
    z = np.array([float(w[np.array(sorted_features(t)) % len(w)].sum()) + b for t in texts])
    out: npt.NDArray[np.float64] = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
    return out


def out_of_fold(
    texts: Sequence[str],
    labels: Sequence[float],
    folds: int = 5,
    weights: Sequence[float] | None = None,
    **kw: Any,
) -> npt.NDArray[np.float64]:
    """Each training row scored by a model that never saw it: thresholds are chosen on these."""
    out = np.zeros(len(texts))
    for k in range(folds):
        held = [i for i in range(len(texts)) if i % folds == k]
        kept = [i for i in range(len(texts)) if i % folds != k]
        kept_w = None if weights is None else [weights[i] for i in kept]
        w, b = fit([texts[i] for i in kept], [labels[i] for i in kept], weights=kept_w, **kw)
        out[held] = scores(w, b, [texts[i] for i in held])
    return out


def shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def drop_near_copies(
    rows: list[Row], reported: Iterable[Row], overlap: float = 0.5, *, either_way: bool = False
) -> list[Row]:
    """Rows sharing at least `overlap` of their 6-word shingles with a reported row are dropped
    (public jailbreak and harm sets copy each other's prompts and templates). With
    `either_way`, so is a row holding `overlap` of a reported row's own shingles: a long
    training text that quotes a short reported prompt whole, among other text."""
    index: dict[tuple[str, ...], set[int]] = {}
    sizes: list[int] = []
    for i, row in enumerate(reported):
        theirs = shingles(row["text"])
        sizes.append(len(theirs))
        for s in theirs:
            index.setdefault(s, set()).add(i)
    kept = []
    for row in rows:
        own = shingles(row["text"])
        hits: dict[int, int] = {}
        for s in own:
            for i in index.get(s, ()):
                hits[i] = hits.get(i, 0) + 1
        near = any(
            n >= overlap * len(own) or (either_way and n >= overlap * sizes[i])
            for i, n in hits.items()
        )
        if not near:
            kept.append(row)
    return kept


def drop_rewordings(rows: list[Row], reported: Iterable[Row], similarity: float = 0.6) -> list[Row]:
    """Rows whose word set overlaps a reported row's by `similarity` or more (Jaccard) are
    dropped. Shingles miss short prompts worded a little differently ("How can I kill a Python
    process?" / "How do I kill a python process?" share no 6-word shingle); handwritten short
    training requests are checked this way too, so no figure counts a row trained on in other
    words."""
    theirs = [set(_WORDS.findall(r["text"].lower())) for r in reported]
    index: dict[str, list[int]] = {}
    for i, words in enumerate(theirs):
        for word in words:
            index.setdefault(word, []).append(i)
    kept = []
    for row in rows:
        own = set(_WORDS.findall(row["text"].lower()))
        shared: dict[int, int] = {}
        for word in own:
            for i in index.get(word, ()):
                shared[i] = shared.get(i, 0) + 1
        if not any(n >= similarity * len(own | theirs[i]) for i, n in shared.items()):
            kept.append(row)
    return kept


def rate(flags: Iterable[bool]) -> tuple[int, int]:
    values = list(flags)
    return sum(values), len(values)


def cut_for(values: Sequence[float], share: float) -> float:
    """The lowest threshold that flags at most `share` of `values` (a score >= it is flagged)."""
    allowed = int(len(values) * share)
    return float(sorted(values, reverse=True)[allowed]) + 1e-6 if allowed < len(values) else 0.0


def rounded_up(value: float, digits: int) -> float:
    """`value` rounded UP to `digits` decimals: a threshold rounded to the nearest can land just
    below the cut it was chosen above, and flag one row more than its limit allows."""
    scale = 10.0**digits
    return math.ceil(value * scale - 1e-9) / scale
