"""Train the content-safety model (guards/data/content_safety_model.npz).

Two linear models on the injection classifier's hashed word uni+bigrams:
- harmful vs benign (one score; the shipped threshold is chosen here);
- which category a harmful text falls in (one-vs-rest per category, harmful rows only).

Training rows (sources and licences: guards/data/ATTRIBUTION.md):
- the `train` half of ../shared/eval/guards/injection_dev.jsonl (guards.dev_split): harmful
  requests (HarmBench, XSTest-unsafe) and benign rows (GSM8K, self-instruct, XSTest-safe);
- public corpora (guards.public_corpora, read from --corpora): AILuminate demo prompts and
  SimpleSafetyTests (harmful, by hazard), ordinary requests (GSM8K train, self-instruct seed
  tasks, MT-bench, HumanEval, MMLU). (The OpenAI moderation samples were tried: with them the
  held-out recall at the same false-positive rate was lower, so they are not used.)
- guards/data/content_safety_handwritten.jsonl: look-alike safe requests ("kill a process",
  history, fiction, safety advice) and a few harmful ones per category.
Training texts that are near-copies of a held-out dev row or a GPTFuzz question are dropped.

The threshold is the lowest that keeps out-of-fold false positives on the training half's
look-alike safe requests (benign_hard) under HARD_FP_TARGET and on every other benign source
under FP_TARGET: chosen without any held-out row. Figures printed at the end are on the
held-out half and on the GPTFuzz questions (never trained on).

Usage: python -m guards.train_content_safety [--dev PATH] [--corpora DIR] [--out PATH]
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from guards import public_corpora
from guards.detectors.content_safety import CATEGORY_DIMENSIONS, MODEL_PATH
from guards.detectors.content_safety_settings import CATEGORIES
from guards.dev_split import rows_in
from guards.train_common import (
    Row,
    cut_for,
    drop_near_copies,
    fit,
    out_of_fold,
    read_jsonl,
    rounded_up,
    scores,
    trainer_parser,
)

HERE = Path(__file__).resolve().parent
HANDWRITTEN = HERE / "data" / "content_safety_handwritten.jsonl"
# The target is <= 2 % on look-alikes at >= 0.80 recall; a bag of n-grams cannot reach
# it (out of fold, 2 % on look-alikes left ~0.2 recall), so the shipped threshold trades 10 %.
HARD_FP_TARGET = 0.10
FP_TARGET = 0.02
# Look-alike safe requests weigh this many ordinary rows: there are few of them, and they are
# what keeps "kill a process" from reading as violence.
HARD_NEGATIVE_WEIGHT = 5.0


def training_rows(dev: list[Row], corpora: Path) -> tuple[list[Row], list[Row]]:
    """(training rows, rows never to train on: the dev held-out half and GPTFuzz questions)."""
    train_dev = [r for r in rows_in(dev, "train") if r["label"] in {"harmful", "benign"}]
    _, gptfuzz_harmful = public_corpora.gptfuzz(corpora)
    reported = rows_in(dev, "heldout") + gptfuzz_harmful
    public = (
        public_corpora.ailuminate(corpora)
        + public_corpora.simple_safety_tests(corpora)
        + public_corpora.benign_instructions(corpora)
    )
    handwritten = [
        {
            **r,
            "source": "handwritten",
            "category": r.get("category", "benign_hard" if r["label"] == "benign" else ""),
        }
        for r in read_jsonl(HANDWRITTEN)
    ]
    rows = train_dev + drop_near_copies(public + handwritten, reported)
    return rows, reported


def choose_threshold(rows: list[Row], oof: np.ndarray) -> float:
    benign: dict[str, list[float]] = defaultdict(list)
    for row, s in zip(rows, oof, strict=True):
        if row["label"] == "benign":
            key = "benign_hard" if row.get("category") == "benign_hard" else row["source"]
            benign[key].append(float(s))
    threshold = 0.5
    for key, values in benign.items():
        target = HARD_FP_TARGET if key == "benign_hard" else FP_TARGET
        threshold = max(threshold, cut_for(values, target))
    return rounded_up(min(threshold, 0.995), 4)


def main() -> None:
    parser = trainer_parser(__doc__, MODEL_PATH)
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows, _ = training_rows(dev, args.corpora)
    texts = [r["text"] for r in rows]
    labels = [float(r["label"] == "harmful") for r in rows]
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[f"{r['label']}/{r['source']}"] += 1
    print("training rows:", dict(sorted(counts.items())))

    weights = [HARD_NEGATIVE_WEIGHT if r.get("category") == "benign_hard" else 1.0 for r in rows]
    oof = out_of_fold(texts, labels, weights=weights)
    threshold = choose_threshold(rows, oof)
    w, b = fit(texts, labels, weights=weights)
    print(f"threshold {threshold} (out-of-fold, training rows only)")

    harmful = [r for r in rows if r["label"] == "harmful" and r.get("category") in CATEGORIES]
    cat_w = np.zeros((len(CATEGORIES), CATEGORY_DIMENSIONS), dtype=np.float32)
    cat_b = np.zeros(len(CATEGORIES), dtype=np.float32)
    for k, category in enumerate(CATEGORIES):
        y = [float(r["category"] == category) for r in harmful]
        cat_w[k], cat_b[k] = fit(
            [r["text"] for r in harmful], y, dimensions=CATEGORY_DIMENSIONS, epochs=300
        )
    np.savez_compressed(
        args.out,
        weights=w.astype(np.float16),
        bias=np.asarray([b], dtype=np.float32),
        threshold=np.asarray([threshold], dtype=np.float32),
        category_weights=cat_w.astype(np.float16),
        category_bias=cat_b,
    )
    print(f"wrote {args.out}")
    report(dev, args.corpora, w, b, threshold)


def report(dev: list[Row], corpora: Path, w: np.ndarray, b: float, threshold: float) -> None:
    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"harmful", "benign"}]
    _, gptfuzz_harmful = public_corpora.gptfuzz(corpora)
    groups: dict[str, list[bool]] = defaultdict(list)
    for row, s in zip(
        held + gptfuzz_harmful,
        scores(w, b, [r["text"] for r in held + gptfuzz_harmful]),
        strict=True,
    ):
        groups[f"{row['label']}/{row['source']}"].append(bool(s >= threshold))
    print("held out (never trained or tuned on): flagged")
    for key, flags in sorted(groups.items()):
        print(f"  {key:36s} {sum(flags)}/{len(flags)} = {sum(flags) / len(flags):.3f}")


if __name__ == "__main__":
    main()
