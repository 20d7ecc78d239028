"""Harmful requests and outputs by category: a linear model on hashed word n-grams, offline.

Two models trained by guards/train_content_safety.py (data and licences:
guards/data/ATTRIBUTION.md): one scores how harmful a text is, the other says which of
CATEGORIES it falls in. A text at or above the threshold gives one finding over the whole text,
typed `HARMFUL_<CATEGORY>` for its most likely category and any other above
CATEGORY_MIN_SHARE, with the harm score. Weights ship in guards/data/content_safety_model.npz.

Cost: the injection classifier's features (~150 µs per KB here) plus two dot products; no
network, no GPU, no torch. A bag of n-grams reads words, not intent: look-alike safe requests
("How do I kill a Python process?") were part of its training, and its false-positive rate on
unseen ones is reported in the README.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards.detectors.injection_features import feature_indices
from guards.verdict import Finding

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "content_safety_model.npz"
CATEGORIES = ("violence", "weapons", "self_harm", "sexual_minors", "hate", "illegal_activity")
CATEGORY_DIMENSIONS = 1 << 16
CATEGORY_MIN_SHARE = 0.5
STREAM_HOLDS = ("all", "window")
_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class ContentSafetyModel:
    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float
    category_weights: npt.NDArray[np.float32]
    category_bias: npt.NDArray[np.float32]


@functools.cache
def load_model(path: Path = MODEL_PATH) -> ContentSafetyModel:
    """The shipped weights (loaded once per process)."""
    with np.load(path) as data:
        return ContentSafetyModel(
            data["weights"].astype(np.float32),
            float(data["bias"][0]),
            float(data["threshold"][0]),
            data["category_weights"].astype(np.float32),
            data["category_bias"].astype(np.float32),
        )


def harm_score(text: str, model: ContentSafetyModel | None = None) -> float:
    """Probability-like score in [0, 1] that the text is a harmful request or content."""
    m = model or load_model()
    z = float(m.weights[feature_indices(text)].sum()) + m.bias
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def category_scores(text: str, model: ContentSafetyModel | None = None) -> dict[str, float]:
    """Each category's one-vs-rest score for a text already judged harmful."""
    m = model or load_model()
    idx = feature_indices(text) % CATEGORY_DIMENSIONS
    z = m.category_weights[:, idx].sum(axis=1) + m.category_bias
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return {c: float(v) for c, v in zip(CATEGORIES, p, strict=True)}


class ContentSafetyDetector:
    """Flags the whole text, with its categories, when the harm score reaches the threshold.

    `categories` narrows what is reported (a text whose categories are all outside it passes).
    On streams, `stream_hold="all"` holds the whole output until it is judged whole (nothing of
    a blocked answer leaves); "window" judges each unreleased window as it goes, streaming at
    the cost of judging pieces (the policy's `hold_back_chars`).
    """

    def __init__(
        self,
        threshold: float | None = None,
        categories: Iterable[str] = CATEGORIES,
        stream_hold: str = "all",
    ) -> None:
        self.model = load_model()
        self.threshold = self.model.threshold if threshold is None else threshold
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.categories = frozenset(categories)
        unknown = self.categories - set(CATEGORIES)
        if unknown or not self.categories:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
        if stream_hold not in STREAM_HOLDS:
            raise ValueError(f"stream_hold must be one of {STREAM_HOLDS}")
        self.stream_hold = stream_hold
        # The stream's chunk checks see only a window: with "all" the window is everything,
        # and the verdict that counts is the whole-text one.
        self.judges_whole_text = stream_hold == "all"

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if not any(i >= 2 for i, _ in enumerate(_WORD.finditer(text))):
            return []  # fewer than three words: nothing the model can read
        score = harm_score(text, self.model)
        if score < self.threshold:
            return []
        by_category = category_scores(text, self.model)
        top = max(by_category, key=by_category.__getitem__)
        named = [c for c in CATEGORIES if c == top or by_category[c] >= CATEGORY_MIN_SHARE]
        reported = [c for c in named if c in self.categories]
        return [Finding(f"HARMFUL_{c.upper()}", 0, len(text), round(score, 4)) for c in reported]

    def holdback(self, text: str, system_prompt: str = "") -> int | None:
        """ "all": every character (judged whole before any leaves); "window": cannot say."""
        return len(text) if self.stream_hold == "all" else None
