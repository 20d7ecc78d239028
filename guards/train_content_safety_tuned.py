"""Train content_safety's `model: tuned` (content_safety_tuned.npz and its encoder).

Rows: those of the MiniLM model (guards.train_content_safety_minilm: the dev set's `train`
half, AILuminate, SimpleSafetyTests, AdvBench, ordinary requests, the handwritten look-alikes)
plus the handwritten contrast training sets (guards/data/content_safety_contrast.md). A fixed
fifth of them (by sha256 of the text) is validation: never fitted.
1. The encoder: MiniLM's top layers fine-tuned on the other rows
   (guards/train_content_safety_encoder.py, torch; `--keep-encoder` uses the encoder file as
   it is).
2. Every row embedded as the guard embeds it (that encoder in the kernel's int8 ONNX graph):
   harm and category logistic regressions as for the MiniLM model, on the fitted rows.
The threshold is the lowest that keeps the validation rows' false positives on the look-alikes
under LOOKALIKE_FP_TARGET and on every other benign source under FP_TARGET (capped at 0.995: a
run whose rule asks for more missed the targets on validation and is not shipped). Figures
printed at the end are on the dev set's held-out half, the GPTFuzz questions and the two
contrast measuring sets (benchmarks/data/guards), none ever trained or tuned on.

Usage: python -m guards.train_content_safety_tuned [--dev PATH] [--corpora DIR] [--out PATH]
           [--encoder PATH] [--layers N] [--keep-encoder]
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards import public_corpora
from guards.detectors.content_safety import (
    ENCODER_PATH,
    TUNED_MODEL_PATH,
    WINDOW_CHARS,
)
from guards.dev_split import rows_in
from guards.train_common import (
    Row,
    drop_near_copies,
    drop_rewordings,
    read_jsonl,
    trainer_parser,
)
from guards.train_content_safety_minilm import (
    LOOKALIKE_WEIGHT,
    Judged,
    choose_threshold,
    embed,
    fit_logistic,
    is_lookalike,
    minilm_training_rows,
    print_counts,
    print_flagged,
    save_model,
)

Matrix = npt.NDArray[np.float64]
VALIDATION_SHARE = 0.2
MEASURING_DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "guards"
CONTRAST_SETS = tuple(MEASURING_DATA / f"content_safety_contrast_{w}.jsonl" for w in "ab")
# Written for training by two more writers who never saw the measuring sets.
CONTRAST_TRAINING = tuple(
    Path(__file__).resolve().parent / "data" / f"content_safety_contrast_{w}.jsonl" for w in "cd"
)


def contrast_sets() -> list[Row]:
    """The two content-safety contrast measuring sets, never trained on."""
    return [row for path in CONTRAST_SETS for row in read_jsonl(path)]


def tuned_training_rows(dev: list[Row], corpora: Path) -> list[Row]:
    """The MiniLM model's rows and the contrast training sets. Near-copies of the contrast
    measuring sets are dropped from all of them (the rest were dropped against the dev
    held-out half and GPTFuzz already); handwritten rows also when they reword a measured row
    (train_common.drop_rewordings)."""
    _, gptfuzz_harmful = public_corpora.gptfuzz(corpora)
    measured = rows_in(dev, "heldout") + gptfuzz_harmful + contrast_sets()
    written = [
        {**row, "source": path.stem.removeprefix("content_safety_")}
        for path in CONTRAST_TRAINING
        for row in read_jsonl(path)
    ]
    kept = drop_rewordings(drop_near_copies(written, measured), measured)
    print(f"contrast training rows: {len(kept)} of {len(written)} kept (others near measured ones)")
    return drop_near_copies(minilm_training_rows(dev, corpora), contrast_sets()) + kept


def is_validation(row: Row) -> bool:
    """A fixed VALIDATION_SHARE of the rows (by sha256 of the text): the threshold is chosen on
    them and the encoder never sees them."""
    digest = hashlib.sha256(row["text"].encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") < VALIDATION_SHARE * 2**32


def main() -> None:
    parser = trainer_parser(__doc__, TUNED_MODEL_PATH)
    parser.add_argument("--encoder", type=Path, default=ENCODER_PATH)
    parser.add_argument("--layers", type=int, default=None, help="top layers to fine-tune")
    parser.add_argument(
        "--keep-encoder", action="store_true", help="use the encoder file as it is (no torch)"
    )
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = tuned_training_rows(dev, args.corpora)
    print_counts(rows)
    train = [r for r in rows if not is_validation(r)]
    valid = [r for r in rows if is_validation(r)]
    print(f"{len(train)} rows fitted, {len(valid)} validation rows (threshold only)")

    texts = [r["text"][:WINDOW_CHARS] for r in train]  # each row's opening window
    y = [float(r["label"] == "harmful") for r in train]
    weights = [LOOKALIKE_WEIGHT if is_lookalike(r) else 1.0 for r in train]
    if not args.keep_encoder:
        from guards.train_content_safety_encoder import LAYERS, fine_tune

        fine_tune(texts, y, weights, args.encoder, layers=args.layers or LAYERS)
    x = embed(texts, args.encoder)
    w, b = fit_logistic(x, y, weights)
    valid_scores = Judged([r["text"] for r in valid], encoder=args.encoder).scores(w, b)
    threshold = choose_threshold(valid, valid_scores)
    caught = [
        s >= threshold for r, s in zip(valid, valid_scores, strict=True) if r["label"] == "harmful"
    ]
    print(f"threshold {threshold}; validation harmful recall {sum(caught)}/{len(caught)}")

    save_model(args.out, x, train, (w, b), threshold)
    report(dev, args.corpora, w, b, threshold, args.encoder)


def report(
    dev: list[Row], corpora: Path, w: Matrix, b: float, threshold: float, encoder: Path
) -> None:
    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"harmful", "benign"}]
    _, gptfuzz_harmful = public_corpora.gptfuzz(corpora)
    rows = held + gptfuzz_harmful + contrast_sets()
    print_flagged(rows, Judged([r["text"] for r in rows], encoder=encoder).scores(w, b), threshold)


if __name__ == "__main__":
    main()
