"""Train the injection guard's `semantic: tuned` opinion (injection_encoder.safetensors and
injection_tuned.npz).

Why: the n-gram model reads words, so a jailbreak reworded past its vocabulary scores low, and
a developer's prompt that quotes instructions scores high (4.1 % of the benign technical
prompts' held-out half at the default threshold). The frozen-MiniLM opinion
(guards.train_injection_minilm) only adds flags in the n-gram model's grey zone. Here MiniLM's
top layers are fine-tuned on the n-gram model's own rows, and the verdict is a mix of both
scores for every prompt past a low gate: the encoder can also clear a prompt the n-gram model
alone would block.

Rows: exactly the n-gram model's (guards.train_injection.training_rows: the dev set's train
half and the public sources, near-copies of every reported row dropped). A fixed fifth of them
(guards.train_content_safety_tuned.is_validation, by sha256 of the text) is validation: the
encoder never sees it, and the gate, the mix and the threshold are chosen on it alone.
1. The encoder: MiniLM's top LAYERS layers and a linear head fine-tuned on the other rows'
   windows (guards.detectors.injection_semantic.windows, each window a row with its prompt's
   label; class-balanced, the n-gram trainer's source weights), 256 word pieces as the guard
   reads (guards/train_content_safety_encoder.py, torch). The head is shipped as the model.
2. Validation: every validation row's windows embedded as the guard embeds them (the kernel's
   int8 graph with the tuned layers in place); its n-gram score from an n-gram model fitted on
   the other rows (the shipped n-gram model saw every row). For each gate and mix, the lowest
   threshold under which no benign source has more false positives than the n-gram model's own
   at the default policy's threshold or FP_TARGET of its rows, whichever allows more; of those,
   the one flagging the most validation attacks (ties: the higher gate, the cheaper).
Figures printed at the end (`--report`) are on rows never trained or tuned on: the dev set's
held-out half, GPTFuzz, the held-out halves of awesome-chatgpt-prompts, CLINC150 and the
benign technical prompts, the polite measuring set, the PII/credentials probe and the second
writer's benign developer prompts (benchmarks/data/guards/benign_dev_prompts_r2.jsonl).

Rebuild (about 15 minutes on two cores):
    OPENBLAS_NUM_THREADS=1 python -m guards.train_injection_tuned [--dev PATH] [--corpora DIR]
        [--out PATH] [--encoder PATH] [--keep-encoder] [--report]
then pin the two printed sha256s in guards/detectors/injection_semantic.py.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards import public_corpora
from guards.detectors.injection_semantic import TUNED_ENCODER_PATH, TUNED_MODEL_PATH, windows
from guards.dev_split import rows_in
from guards.train_common import Row, fit, read_jsonl, rounded_up, scores, trainer_parser
from guards.train_content_safety_minilm import Judged
from guards.train_content_safety_tuned import is_validation
from guards.train_injection import EPOCHS, FP_TARGET, L2, training_rows, unseen_benign, weights_of
from guards.train_injection_minilm import NGRAM_THRESHOLD, sample_weights, summary

Matrix = npt.NDArray[np.float64]
# Chosen on another validation fifth of the training rows (by the first byte of the same
# digest; never on reported rows): 2 layers, 3 epochs at 4e-5 against 3 layers, 4 epochs at
# 6e-5. With the mix at 0.3, 2 layers flagged 130 of 144 validation attacks at 4 false
# positives of 872 benign rows and 124 at 2; 3 layers 131 at 8 and 124 at 1 (the n-gram model
# fitted without that fifth: 118 at 1). Alike, and 2 layers train in half the time (10 min).
LAYERS = 2
EPOCHS_TUNED = 3
LEARNING_RATE = 4e-5
MAX_TOKENS = 256  # what the guard reads of a window
GATES = (0.005, 0.01, 0.02, 0.05)
# The n-gram score's share of the mix (the encoder's is the rest).
MIXES = (0.0, 0.2, 0.3, 0.5, 0.7)
MEASURING_DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "guards"
R2_DEVELOPER = MEASURING_DATA / "benign_dev_prompts_r2.jsonl"


def allowed_false_positives(rows: list[Row], ngram: Matrix) -> dict[str, int]:
    """Per benign source: the n-gram model's own validation false positives at the default
    threshold, or FP_TARGET of the source's rows, whichever is more."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row, s in zip(rows, ngram, strict=True):
        if row["label"] == "benign":
            counts[row["source"]][0] += int(s >= NGRAM_THRESHOLD)
            counts[row["source"]][1] += 1
    return {src: max(own, int(FP_TARGET * n)) for src, (own, n) in counts.items()}


def lowest_threshold(rows: list[Row], mixed: Matrix, allowed: dict[str, int]) -> float:
    """The lowest threshold on `mixed` keeping every benign source within `allowed`."""
    by_source: dict[str, list[float]] = defaultdict(list)
    for row, s in zip(rows, mixed, strict=True):
        if row["label"] == "benign":
            by_source[row["source"]].append(float(s))
    worst = 0.0
    for source, values in by_source.items():
        values.sort(reverse=True)
        if len(values) > allowed[source]:
            worst = max(worst, values[allowed[source]])
    return rounded_up(min(worst + 1e-6, 0.9999), 4)


def choose(rows: list[Row], ngram: Matrix, tuned: Matrix) -> tuple[float, float, float]:
    """(gate, mix, threshold) by the rule in the module docstring, on validation rows."""
    y = np.array([r["label"] == "attack" for r in rows])
    allowed = allowed_false_positives(rows, ngram)
    best: tuple[int, float, float, float] | None = None
    for gate in GATES:
        for mix in MIXES:
            mixed = np.where(ngram >= gate, mix * ngram + (1 - mix) * tuned, 0.0)
            threshold = lowest_threshold(rows, mixed, allowed)
            flagged = int((mixed >= threshold)[y].sum())
            print(f"  gate {gate} mix {mix}: threshold {threshold} flags {flagged}/{int(y.sum())}")
            if best is None or (flagged, gate) > (best[0], best[1]):
                best = (flagged, gate, mix, threshold)
    assert best is not None
    return best[1], best[2], best[3]


def main() -> None:
    parser = trainer_parser(__doc__, TUNED_MODEL_PATH)
    parser.add_argument("--encoder", type=Path, default=TUNED_ENCODER_PATH)
    parser.add_argument(
        "--keep-encoder", action="store_true", help="use the encoder file as it is (no torch)"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="afterwards, print the held-out figures of the shipped candidate (once)",
    )
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = training_rows(dev, args.corpora, log=True)
    weights = sample_weights(rows)
    fitted = [i for i, r in enumerate(rows) if not is_validation(r)]
    valid = [rows[i] for i, r in enumerate(rows) if is_validation(r)]
    print(f"{len(fitted)} rows fitted, {len(valid)} validation rows (gate, mix, threshold)")

    if args.keep_encoder:
        with np.load(args.out) as shipped:
            head = (shipped["weights"].astype(np.float64), float(shipped["bias"][0]))
    else:
        from guards.train_content_safety_encoder import fine_tune

        texts, labels, sample = [], [], []
        for i in fitted:
            for window in windows(rows[i]["text"]):
                texts.append(window)
                labels.append(float(rows[i]["label"] == "attack"))
                sample.append(float(weights[i]))
        head = fine_tune(
            texts,
            labels,
            sample,
            args.encoder,
            layers=LAYERS,
            epochs=EPOCHS_TUNED,
            max_tokens=MAX_TOKENS,
            learning_rate=LEARNING_RATE,
            by_length=True,
        )
    w_ngram, b_ngram = fit(
        [rows[i]["text"] for i in fitted],
        [float(rows[i]["label"] == "attack") for i in fitted],
        weights=[weights_of(rows)[i] for i in fitted],
        l2=L2,
        epochs=EPOCHS,
    )
    ngram = np.asarray(scores(w_ngram, b_ngram, [r["text"] for r in valid]), dtype=np.float64)
    judged = Judged([r["text"] for r in valid], cut=windows, encoder=args.encoder)
    tuned = judged.scores(*head)  # each row's highest window, as the guard scores it
    gate, mix, threshold = choose(valid, ngram, tuned)
    y = np.array([r["label"] == "attack" for r in valid])
    base = ngram >= NGRAM_THRESHOLD
    mixed = np.where(ngram >= gate, mix * ngram + (1 - mix) * tuned, 0.0)
    summary(f"validation, n-gram alone at {NGRAM_THRESHOLD}", valid, base)
    summary(f"validation, gate {gate} mix {mix} threshold {threshold}", valid, mixed >= threshold)
    caught = int((mixed >= threshold)[y].sum())
    print(f"validation attacks: n-gram {int(base[y].sum())}, tuned {caught} of {int(y.sum())}")
    np.savez_compressed(
        args.out,
        weights=head[0].astype(np.float32),
        bias=np.asarray([head[1]], dtype=np.float32),
        threshold=np.asarray([threshold], dtype=np.float32),
        gate=np.asarray([gate], dtype=np.float32),
        mix=np.asarray([mix], dtype=np.float32),
    )
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    encoder_digest = hashlib.sha256(args.encoder.read_bytes()).hexdigest()
    print(f"wrote {args.out} (sha256 {digest}); encoder sha256 {encoder_digest}")
    if args.report:
        report(dev, args.corpora, args.out, digest, args.encoder, encoder_digest)


def report(
    dev: list[Row], corpora: Path, path: Path, digest: str, encoder: Path, encoder_digest: str
) -> None:
    """The shipped n-gram model alone and with this opinion, as the detector runs them."""
    from guards.detectors.injection import InjectionDetector
    from guards.detectors.injection_semantic import SemanticInjectionDetector

    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"attack", "benign"}]
    attacks, _ = public_corpora.gptfuzz(corpora)
    second_writer = [{**r, "source": "benign_dev_prompts_r2"} for r in read_jsonl(R2_DEVELOPER)]
    rows = held + attacks + unseen_benign(corpora) + second_writer
    for rules in (False, True):
        plain = InjectionDetector(NGRAM_THRESHOLD, use_rules=rules)
        tuned = SemanticInjectionDetector(
            NGRAM_THRESHOLD,
            use_rules=rules,
            model_path=path,
            model_sha256=digest,
            encoder_path=encoder,
            encoder_sha256=encoder_digest,
        )
        with_rules = "with the phrase rules" if rules else "classifier alone"
        for name, detector in (("n-gram", plain), ("n-gram + tuned", tuned)):
            flags = np.array([bool(detector.find(r["text"])) for r in rows])
            summary(f"held out, {name}, {with_rules}", rows, flags)


if __name__ == "__main__":
    main()
