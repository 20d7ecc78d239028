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

# Each rule with the literal substrings (of the lower-cased text) one of which every match
# contains. Checking them with `in` (C speed, ~1 µs per KB) before running the rule keeps
# benign prompts from paying for ten `.{0,40}` scans (~400 µs per KB measured here); the rules
# run on the lower-cased text, so they need no IGNORECASE.
_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("ignore", "disregard", "forget", "override", "bypass"),
        r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}"
        r"\b(?:previous|prior|above|earlier|preceding|all|your|the)\b.{0,30}"
        r"\b(?:instructions?|prompts?|rules|directives|guidelines)",
    ),
    (
        ("prompt", "instructions", "rules"),
        r"\b(?:reveal|print|show|repeat|output|tell me|give me|leak|display|"
        r"what (?:is|are|was))\b.{0,40}"
        r"\b(?:system prompt|initial (?:prompt|instructions)|hidden (?:prompt|instructions)|"
        r"your (?:instructions|prompt|rules)|pre-?prompt)",
    ),
    (("repeat ",), r"\brepeat (?:the|all)? ?(?:words|text|everything) (?:above|before)"),
    (
        ("do anything now", "developer mode", "jailbr", "dan mode", "god mode", "evil mode"),
        r"\b(?:do anything now|developer mode|jailbr(?:eak|oken)|"
        r"dan mode|god mode|evil mode)\b",
    ),
    (
        ("you are ",),
        r"\byou are (?:now )?(?:dan|free from|no longer bound|unrestricted|unfiltered|"
        r"an? ai without)",
    ),
    (
        ("ethical", "moral", "safety", "content"),
        r"\b(?:without|no|free of|ignore (?:all|any|your)) (?:any )?"
        r"(?:ethical|moral|safety|content)"
        r" (?:guidelines|restrictions|filters|limits|policies|constraints)",
    ),
    (
        ("pretend ",),
        r"\bpretend (?:that )?you (?:are|have) (?:no|not|an? (?:ai|model) (?:with no|without))",
    ),
    (("instruction",), r"\b(?:new|updated) (?:system )?instructions?\s*:"),
    (("from now on",), r"\bfrom now on,? you (?:will|are|must|shall)\b"),
    (("stay in character",), r"\bstay in character\b"),
)
RULES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (hints, re.compile(pattern, re.DOTALL)) for hints, pattern in _RULES
)


# The four non-ASCII letters that re's IGNORECASE matches to ASCII letters; folding them first
# makes `text.lower()` + case-sensitive rules match exactly what IGNORECASE rules would
# ("\u0131gnore previous instructions", with a dotless i, included).
_IGNORECASE_EXTRAS = (("\u0130", "i"), ("\u0131", "i"), ("\u017f", "s"), ("\u212a", "k"))


def _lowered(text: str) -> str:
    if not text.isascii():
        for special, ascii_letter in _IGNORECASE_EXTRAS:
            if special in text:
                text = text.replace(special, ascii_letter)
    return text.lower()


def rules_match(text: str) -> bool:
    """True when any phrase rule matches (case-insensitively) somewhere in the text."""
    lowered = _lowered(text)
    contains = lowered.__contains__
    return any(
        any(map(contains, hints)) and pattern.search(lowered) is not None
        for hints, pattern in RULES
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


_WORD = re.compile(r"[^\W\d_]{2,}")
_MIN_WORDS = 3


def _has_words(text: str) -> bool:
    """Whether the classifier has anything to read: a few hashed n-grams of digits and single
    letters can collide with attack features ("q 28 9" scored 0.7). No attack in the shared
    dev set has fewer than three words; the phrase rules still see every text."""
    return any(i >= _MIN_WORDS - 1 for i, _ in enumerate(_WORD.finditer(text)))


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
        if self.use_rules and rules_match(text):
            return [Finding("PROMPT_INJECTION", 0, len(text), 1.0)]
        if self.use_classifier and _has_words(text):
            score = classifier_score(text)
            if score >= self.threshold:
                return [Finding("PROMPT_INJECTION", 0, len(text), round(score, 4))]
        return []

    def holdback(self, text: str, system_prompt: str = "") -> None:
        """Cannot say: the classifier reads the whole text and a rule may span ~150 characters,
        so a stream holds the policy's `hold_back_chars` for this guard."""
        return None
