"""Train the content-safety guard's static first pass (guards/data/content_safety_static.npz).

The MiniLM model costs ~2 ms a window, ~20 ms a KB of prose; most windows of ordinary text are
nowhere near harmful. A logistic regression over the static vectors of the router's static table
(mean and maximum of a window's token rows: mesh/embeddings/static.py, ~0.05 ms) scores every
window first, and only windows scoring at or above `skip_below` go to MiniLM. A skipped window
can only lower a text's score, so the pass never adds a false positive; what it can cost is
recall, where it skips a window MiniLM would have flagged.

Same rows, labels and weights as the MiniLM model (guards/train_content_safety_minilm.py). The
bound is the largest of SKIP_GRID at which, out of fold on the training rows, at most MAX_LOST
of the harmful rows the shipped MiniLM model catches lose every window it flags. Figures on the
dev set's held-out half and on the GPTFuzz questions (never trained or tuned on) are printed
at the end for both, with the share of windows that still run MiniLM.

Usage: python -m guards.train_content_safety_static [--dev PATH] [--corpora PATH] [--out PATH]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards.detectors.content_safety import (
    MINILM_MODEL_PATH,
    STATIC_MODEL_PATH,
    WINDOW_CHARS,
    load_model,
    windows,
)
from guards.train_common import Row, read_jsonl, trainer_parser
from guards.train_content_safety_minilm import (
    LOOKALIKE_WEIGHT,
    Judged,
    fit_logistic,
    heldout_rows,
    is_lookalike,
    minilm_training_rows,
    predict,
)

Matrix = npt.NDArray[np.float64]
SKIP_GRID = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3)
MAX_LOST = 0.01  # of the harmful training rows MiniLM catches, out of fold
FOLDS = 5


def static_embed(texts: Sequence[str]) -> Matrix:
    """Each window's static mean+max vector, as the guard computes it."""
    from mesh.embeddings.static import shared_static_embedder
    from mesh.embeddings.text import embedding_text

    embedder = shared_static_embedder("mean+max")
    return embedder.embed([embedding_text(t) for t in texts]).astype(np.float64)


class Windows:
    """Every row's windows, each embedded once with both models."""

    def __init__(self, texts: Sequence[str]) -> None:
        minilm = Judged(texts)  # MiniLM vectors of the unique windows, rows -> window indices
        self.rows = minilm.rows
        self.minilm = minilm.vectors
        unique = sorted({w for t in texts for w in (windows(t) or [t])})
        self.static = static_embed(unique)


def lost_and_kept(
    rows: list[Row], w: Windows, static_scores: Matrix, flagged: npt.NDArray[np.bool_], bound: float
) -> tuple[float, float]:
    """(share of caught harmful rows that lose every flagged window, share of windows kept)."""
    caught = lost = 0
    for row, ix in zip(rows, w.rows, strict=True):
        hits = [i for i in ix if flagged[i]]
        if row["label"] != "harmful" or not hits:
            continue
        caught += 1
        lost += all(static_scores[i] < bound for i in hits)
    kept = float((static_scores >= bound).mean())
    return (lost / caught if caught else 0.0), kept


def main() -> None:
    parser = trainer_parser(__doc__, STATIC_MODEL_PATH)
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = minilm_training_rows(dev, args.corpora)
    y = [float(r["label"] == "harmful") for r in rows]
    weights = [LOOKALIKE_WEIGHT if is_lookalike(r) else 1.0 for r in rows]
    x = static_embed([r["text"][:WINDOW_CHARS] for r in rows])
    texts = [r["text"] for r in rows]
    win = Windows(texts)
    shipped = load_model(MINILM_MODEL_PATH)
    flagged = predict(win.minilm, shipped.weights.astype(np.float64), shipped.bias) >= (
        shipped.threshold
    )
    # Out of fold: each row's windows scored by a static model fitted without the row.
    oof = np.full(len(win.static), -1.0)
    idx = np.arange(len(rows))
    for k in range(FOLDS):
        held, kept = idx[idx % FOLDS == k], idx[idx % FOLDS != k]
        sw, sb = fit_logistic(x[kept], [y[i] for i in kept], [weights[i] for i in kept])
        scores = predict(win.static, sw, sb)
        for i in held:  # a window two rows share keeps the higher of its scores: MiniLM sees it
            for j in win.rows[i]:
                oof[j] = max(oof[j], float(scores[j]))
    bound = SKIP_GRID[0]
    for candidate in SKIP_GRID:
        lost, kept_share = lost_and_kept(rows, win, oof, flagged, candidate)
        print(f"skip below {candidate}: lost {lost:.4f} of caught harmful rows, MiniLM for "
              f"{kept_share:.3f} of windows (out of fold)")  # fmt: skip
        if lost <= MAX_LOST:
            bound = candidate
    w, b = fit_logistic(x, y, weights)
    np.savez_compressed(
        args.out,
        weights=w.astype(np.float32),
        bias=np.asarray([b], dtype=np.float32),
        skip_below=np.asarray([bound], dtype=np.float32),
    )
    print(f"skip below {bound}; wrote {args.out}")
    report(dev, args.corpora, w, b, bound)


def report(dev: list[Row], corpora: Path, w: Matrix, b: float, bound: float) -> None:
    """Held-out rows (never trained or tuned on): MiniLM alone vs the static pass first."""
    rows = heldout_rows(dev, corpora)
    win = Windows([r["text"] for r in rows])
    m = load_model(MINILM_MODEL_PATH)
    minilm = predict(win.minilm, m.weights.astype(np.float64), m.bias)
    static = predict(win.static, w, b)
    groups: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    escalated = total = 0
    for row, ix in zip(rows, win.rows, strict=True):
        alone = max(minilm[i] for i in ix) >= m.threshold
        asked = [i for i in ix if static[i] >= bound]
        escalated += len(asked)
        total += len(ix)
        both = bool(asked) and max(minilm[i] for i in asked) >= m.threshold
        groups[f"{row['label']}/{row['source']}"].append((alone, both))
    print("held out (never trained or tuned on): flagged by MiniLM alone / static first")
    for key, flags in sorted(groups.items()):
        a, s = sum(f[0] for f in flags), sum(f[1] for f in flags)
        print(f"  {key:36s} {a}/{len(flags)} / {s}/{len(flags)}")
    print(f"windows sent to MiniLM: {escalated}/{total}")


if __name__ == "__main__":
    main()
