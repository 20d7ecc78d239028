"""Train the injection guard's semantic second opinion (guards/data/injection_minilm.npz).

Rows: exactly the n-gram model's (guards.train_injection.training_rows: the dev set's train
half and the public sources, near-copies of every reported row dropped). Each row's windows
(guards.detectors.injection_semantic.windows: the whole text, or its head and tail window) are
embedded with the kernel's MiniLM, int8, one text per run, as the guard embeds them.

Model: L2 logistic regression (Newton steps, guards.train_content_safety_minilm.fit_logistic)
on the 384-d window vectors, each window a row with its prompt's label, class-balanced and with
the n-gram trainer's source weights; a prompt's score is its highest window's.

Gate and threshold, out of fold only (5 folds by row index, as the n-gram trainer's): each row
gets an n-gram score and a MiniLM score from models that never saw it. A prompt is flagged when
its n-gram score reaches NGRAM_THRESHOLD (the default policy's), or its n-gram score is at least
the gate and its MiniLM score at least the threshold. For each gate in GATES, the lowest
threshold keeping every benign source's out-of-fold false positives at most the n-gram model's
own (so within the n-gram trainer's 1 % wherever the n-gram model is); of the pairs flagging
within GATE_SLACK of the most training attacks, the highest (cheapest) gate wins. Held-out rows
are read only with `--report`, for the figures of the one shipped candidate.

Deterministic (no sampling, no random init). Rebuild:
    OPENBLAS_NUM_THREADS=1 python -m guards.train_injection_minilm [--dev PATH] [--corpora DIR]
        [--out PATH] [--report]
then pin the printed sha256 in guards/detectors/injection_semantic.py (MODEL_SHA256).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards import public_corpora
from guards.detectors.injection_semantic import MODEL_PATH, windows
from guards.dev_split import rows_in
from guards.train_common import Row, out_of_fold, read_jsonl, rounded_up, trainer_parser
from guards.train_content_safety_minilm import Judged, fit_logistic
from guards.train_injection import (
    EPOCHS,
    L2,
    training_rows,
    unseen_benign,
    weights_of,
)

Matrix = npt.NDArray[np.float64]
NGRAM_THRESHOLD = 0.95  # guards/policies/default.yaml's prompt_injection threshold
GATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
# The highest gate flagging within this share of the best gate's attacks wins: a lower gate
# embeds most benign prompts (0.02 sends "What is the capital of Australia?" to MiniLM) for a
# few more training attacks (567 vs 563 of 724 out of fold when the benign technical prompts
# joined the n-gram model's rows).
GATE_SLACK = 0.01
# Chosen out of fold among 0.01, 0.1, 1 and 10 (and against a 32/64-unit MLP, which did no
# better): the weakest L2 tried flagged the most attacks at the same false-positive rule.
MINILM_L2 = 0.1
FOLDS = 5


class Windows(Judged):
    """Every row's windows of the injection guard (head and tail of a long prompt), embedded
    once."""

    def __init__(self, texts: Sequence[str]) -> None:
        super().__init__(texts, cut=windows)

    def training_set(self, picked: Sequence[int]) -> tuple[list[int], list[int]]:
        """(window index, row index) for each window of each picked row."""
        pairs = [(w, i) for i in picked for w in self.rows[i]]
        return [w for w, _ in pairs], [i for _, i in pairs]

    def logits(self, w: Matrix, b: float) -> Matrix:
        per_window = self.vectors @ w + b
        return np.array([per_window[ix].max() for ix in self.rows])


def sample_weights(rows: list[Row]) -> Matrix:
    """Class-balanced (as guards.train_common.fit) times the n-gram trainer's source weights."""
    y = np.array([r["label"] == "attack" for r in rows], dtype=np.float64)
    n, pos = len(y), y.sum()
    balance = np.where(y == 1, n / (2 * pos), n / (2 * (n - pos)))
    out: Matrix = balance * np.asarray(weights_of(rows))
    return out


def fit_windows(
    win: Windows, y: Matrix, weights: Matrix, picked: Sequence[int]
) -> tuple[Matrix, float]:
    wins, owners = win.training_set(picked)
    return fit_logistic(
        win.vectors[wins], y[owners].tolist(), weights[owners].tolist(), l2=MINILM_L2
    )


def sigmoid(z: Matrix) -> Matrix:
    out: Matrix = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return out


def choose(
    rows: list[Row], ngram: Matrix, semantic: Matrix, *, log: bool = True
) -> tuple[float, float]:
    """(gate, threshold) by the rule in the module docstring, on out-of-fold scores."""
    y = np.array([r["label"] == "attack" for r in rows])
    sources: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r["label"] == "benign":
            sources[r["source"]].append(i)
    base = ngram >= NGRAM_THRESHOLD
    # No benign source gains a false positive over the n-gram model's own: one already past
    # FP_TARGET alone (the benign technical prompts at the capped threshold) gains none either.
    allowed = {s: int(base[ix].sum()) for s, ix in sources.items()}
    candidates: list[tuple[int, float, float]] = []
    for gate in GATES:
        band = (ngram >= gate) & ~base
        worst = 0.0
        for s, ix in sources.items():
            extra = int(allowed[s] - base[ix].sum())
            # the band's benign scores of this source: all but `extra` of them stay under
            scores = sorted((float(semantic[i]) for i in ix if band[i]), reverse=True)
            if len(scores) > extra:
                worst = max(worst, scores[extra])
        threshold = rounded_up(min(worst + 1e-6, 0.9999), 4)
        flagged = int((base | (band & (semantic >= threshold)))[y].sum())
        if log:
            print(f"  gate {gate}: threshold {threshold} flags {flagged}/{int(y.sum())} attacks")
        candidates.append((flagged, gate, threshold))
    most = max(flagged for flagged, _, _ in candidates)
    _, gate, threshold = max(
        (c for c in candidates if c[0] >= most * (1 - GATE_SLACK)), key=lambda c: c[1]
    )
    return gate, threshold


def summary(name: str, rows: list[Row], flags: npt.NDArray[np.bool_]) -> None:
    groups: dict[str, list[bool]] = defaultdict(list)
    for row, flag in zip(rows, flags, strict=True):
        groups[f"{row['label']}/{row.get('category', '')}/{row['source']}"].append(bool(flag))
    print(name)
    for key, values in sorted(groups.items()):
        print(f"  {key:52s} {sum(values)}/{len(values)} = {sum(values) / len(values):.4f}")


def main() -> None:
    parser = trainer_parser(__doc__, MODEL_PATH)
    parser.add_argument(
        "--report",
        action="store_true",
        help="afterwards, print the held-out figures (dev held-out half, GPTFuzz, benign "
        "held-out sources) of the shipped candidate: once, for the candidate chosen",
    )
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = training_rows(dev, args.corpora, log=True)
    texts = [r["text"] for r in rows]
    labels = [float(r["label"] == "attack") for r in rows]
    y = np.asarray(labels)
    ngram = out_of_fold(texts, labels, folds=FOLDS, weights=weights_of(rows), l2=L2, epochs=EPOCHS)
    win = Windows(texts)
    weights = sample_weights(rows)
    semantic = np.zeros(len(rows))
    index = np.arange(len(rows))
    for k in range(FOLDS):
        kept, held = index[index % FOLDS != k], index[index % FOLDS == k]
        w, b = fit_windows(win, y, weights, kept.tolist())
        semantic[held] = sigmoid(win.logits(w, b))[held]
    gate, threshold = choose(rows, ngram, semantic)
    base = ngram >= NGRAM_THRESHOLD
    combined = base | ((ngram >= gate) & (semantic >= threshold))
    summary(f"out of fold, n-gram alone at {NGRAM_THRESHOLD}", rows, base)
    summary(f"out of fold, with MiniLM (gate {gate}, threshold {threshold})", rows, combined)
    w, b = fit_windows(win, y, weights, index.tolist())
    np.savez_compressed(
        args.out,
        weights=w.astype(np.float32),
        bias=np.asarray([b], dtype=np.float32),
        threshold=np.asarray([threshold], dtype=np.float32),
        gate=np.asarray([gate], dtype=np.float32),
    )
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} (sha256 {digest}); gate {gate}, threshold {threshold}")
    if args.report:
        report(dev, args.corpora, args.out, digest)


def report(dev: list[Row], corpora: Path, path: Path, digest: str) -> None:
    """The shipped n-gram model and this one, as the detector runs them (phrase rules on)."""
    from guards.detectors.injection import InjectionDetector
    from guards.detectors.injection_semantic import SemanticInjectionDetector

    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"attack", "benign"}]
    attacks, _ = public_corpora.gptfuzz(corpora)
    rows = held + attacks + unseen_benign(corpora)
    for rules in (False, True):
        plain = InjectionDetector(NGRAM_THRESHOLD, use_rules=rules)
        semantic = SemanticInjectionDetector(
            NGRAM_THRESHOLD, use_rules=rules, model_path=path, model_sha256=digest
        )
        with_rules = "with the phrase rules" if rules else "classifier alone"
        for name, detector in (("n-gram", plain), ("n-gram + MiniLM", semantic)):
            flags = np.array([bool(detector.find(r["text"])) for r in rows])
            summary(f"held out, {name}, {with_rules}", rows, flags)


if __name__ == "__main__":
    main()
