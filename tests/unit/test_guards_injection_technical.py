"""The injection guard on developers' prompts: pasted configs, code, logs, prompt templates.

The shipped model before these rows were added blocked 39 of the 220 held-out benign technical
prompts (17.7 %) and 15 of the 354 prompts of the PII/credentials probe (4.2 %): "password",
"user", "prompt" and code punctuation weighed as attack cues. Ceilings a little over today's
figures (9/220 and 0/354, README): a regression fails, a row or two of noise does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from guards.detectors.injection import InjectionDetector
from guards.dev_split import rows_in
from guards.policy_store import DEFAULT_POLICY_PATH

ROOT = Path(__file__).resolve().parents[2]
TECHNICAL = ROOT / "guards" / "data" / "benign_technical.jsonl"
PROBE = ROOT / "benchmarks" / "data" / "guards" / "pii_secrets_probe.jsonl"


def default_threshold() -> float:
    policy = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text(encoding="utf-8"))
    [guard] = [g for g in policy["guards"] if g["name"] == "prompt_injection"]
    return float(guard["params"]["threshold"])


def rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def blocked(texts: list[str]) -> int:
    detector = InjectionDetector(threshold=default_threshold())
    return sum(bool(detector.find(t)) for t in texts)


def test_held_out_benign_technical_prompts_are_rarely_blocked() -> None:
    held = [r["text"] for r in rows_in(rows(TECHNICAL), "heldout")]
    assert len(held) > 200
    assert blocked(held) <= 12  # 9 today (4.1 %)


def test_prompts_carrying_personal_data_and_credentials_are_not_injections() -> None:
    """The probe set was never trained on and was written by someone who never saw the guard."""
    texts = [r["text"] for r in rows(PROBE)]
    assert blocked(texts) <= 3  # 0 today
