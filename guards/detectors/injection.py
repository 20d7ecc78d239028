"""Prompt-injection / jailbreak detector: phrase rules plus a shipped linear classifier.

The rules catch the classic phrasings with certainty; the classifier (hashed word n-grams,
logistic regression, trained by `guards/train_injection.py`) catches the long role-play
jailbreaks the rules miss. Weights live in guards/data/injection_model.npz.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards.detectors.injection_features import feature_indices
from guards.verdict import Finding

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "injection_model.npz"

RULES = re.compile(
    "|".join(
        [
            r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}"
            r"\b(?:previous|prior|above|earlier|preceding|all|your|the)\b.{0,30}"
            r"\b(?:instructions?|prompts?|rules|directives|guidelines)",
            r"\b(?:reveal|print|show|repeat|output|tell me|give me|leak|display|"
            r"what (?:is|are|was))\b.{0,40}"
            r"\b(?:system prompt|initial (?:prompt|instructions)|hidden (?:prompt|instructions)|"
            r"your (?:instructions|prompt|rules)|pre-?prompt)",
            r"\brepeat (?:the|all)? ?(?:words|text|everything) (?:above|before)",
            r"\b(?:do anything now|developer mode|jailbr(?:eak|oken)|"
            r"dan mode|god mode|evil mode)\b",
            r"\byou are (?:now )?(?:dan|free from|no longer bound|unrestricted|unfiltered|"
            r"an? ai without)",
            r"\b(?:without|no|free of|ignore (?:all|any|your)) (?:any )?"
            r"(?:ethical|moral|safety|content)"
            r" (?:guidelines|restrictions|filters|limits|policies|constraints)",
            r"\bpretend (?:that )?you (?:are|have) (?:no|not|an? (?:ai|model) (?:with no|without))",
            r"\b(?:new|updated) (?:system )?instructions?\s*:",
            r"\bfrom now on,? you (?:will|are|must|shall)\b",
            r"\bstay in character\b",
        ]
    ),
    re.IGNORECASE | re.DOTALL,
)


@functools.cache
def load_model(path: Path = MODEL_PATH) -> tuple[npt.NDArray[np.float32], float]:
    """The shipped weights (loaded once per process)."""
    with np.load(path) as data:
        return data["weights"].astype(np.float32), float(data["bias"][0])


def classifier_score(text: str, path: Path = MODEL_PATH) -> float:
    """Probability that the text is an injection/jailbreak, in [0, 1]."""
    weights, bias = load_model(path)
    z = float(weights[feature_indices(text)].sum()) + bias
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


class InjectionDetector:
    """Flags the whole text when a rule fires or the classifier score reaches the threshold."""

    def __init__(
        self, threshold: float = 0.5, use_classifier: bool = True, use_rules: bool = True
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.threshold = threshold
        self.use_classifier = use_classifier
        self.use_rules = use_rules
        if use_classifier:
            load_model()

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if self.use_rules and RULES.search(text):
            return [Finding("PROMPT_INJECTION", 0, len(text), 1.0)]
        if self.use_classifier:
            score = classifier_score(text)
            if score >= self.threshold:
                return [Finding("PROMPT_INJECTION", 0, len(text), round(score, 4))]
        return []
