"""Harmful requests and outputs by category, offline: a MiniLM model (default) or n-grams.

Three models, each trained by guards/train_content_safety*.py (data and licences:
guards/data/ATTRIBUTION.md), each with a harm score, its threshold and one-vs-rest category
scores over CATEGORIES:

- `minilm` (the default): logistic regression on all-MiniLM-L6-v2 sentence vectors (the
  kernel's embedder, mesh.embeddings, int8 on ONNX Runtime), so it reads what a request
  asks, not only its words. It judges the whole text (if short) and each of its sentences
  (`windows`); the highest score decides. Figures on held-out rows: README, "Measured
  quality". Cost: one MiniLM run per window, ~2 ms for a short prompt and ~20 ms per KB of
  prose here; a text of more than `max_windows` windows is judged on that many, evenly spaced.
- `tuned`: the same, on vectors of MiniLM with its top two layers fine-tuned for this guard
  (`ENCODER_PATH`, the kernel's int8 graph with those layers in place) and trained with
  handwritten contrast pairs too: on two unseen writers' contrast sets it flags fewer
  look-alikes at more recall; on the dev set's short XSTest questions it catches fewer
  (README, "Measured quality"). Same cost as `minilm`; no static first pass.
- `ngram`: the injection classifier's hashed word n-grams (~0.17 ms per KB) plus two dot
  products; weaker (look-alike safe requests such as "How do I kill a Python process?" were
  part of its training), for policies that must stay under a millisecond.

A text at or above the threshold gives one finding over the whole text, typed
`HARMFUL_<CATEGORY>` for its most likely category and any other above CATEGORY_MIN_SHARE, with
the harm score. No network, no GPU, no torch.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from guards.detectors.content_safety_settings import CATEGORIES, MAX_WINDOWS
from guards.detectors.injection_features import sorted_features
from guards.verdict import Finding

if TYPE_CHECKING:
    from mesh.embeddings.batching import Embedder

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "content_safety_model.npz"
MINILM_MODEL_PATH = MODEL_PATH.with_name("content_safety_minilm.npz")
STATIC_MODEL_PATH = MODEL_PATH.with_name("content_safety_static.npz")
TUNED_MODEL_PATH = MODEL_PATH.with_name("content_safety_tuned.npz")
# MiniLM's top layers fine-tuned for this guard (guards/train_content_safety_encoder.py): the
# vectors the `tuned` model reads come from the wheel's MiniLM with these layers in place.
ENCODER_PATH = MODEL_PATH.with_name("content_safety_encoder.safetensors")
MODELS = ("minilm", "tuned", "ngram")
# MiniLM reads 256 word pieces; 800 characters of English are ~200 of them.
WINDOW_CHARS = 800
EMBEDDING_PRECISION: Final = "int8"  # the router's default precision: the same vectors
CATEGORY_DIMENSIONS = 1 << 16
CATEGORY_MIN_SHARE = 0.5
STREAM_HOLDS = ("all", "window")
_WORD = re.compile(r"[^\W\d_]{2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class ContentSafetyModel:
    """Either model's weights: a harm score over its features (hashed n-grams, or a MiniLM
    vector), its threshold, and one-vs-rest category scores over the same features."""

    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float
    category_weights: npt.NDArray[np.float32]  # (len(CATEGORIES), features)
    category_bias: npt.NDArray[np.float32]


@functools.cache
def load_model(path: Path = MODEL_PATH) -> ContentSafetyModel:
    """Shipped weights (each file loaded once per process): MODEL_PATH or MINILM_MODEL_PATH."""
    with np.load(path) as data:
        return ContentSafetyModel(
            data["weights"].astype(np.float32),
            float(data["bias"][0]),
            float(data["threshold"][0]),
            data["category_weights"].astype(np.float32),
            data["category_bias"].astype(np.float32),
        )


def windows(text: str, size: int = WINDOW_CHARS, most: int = MAX_WINDOWS) -> list[str]:
    """What the MiniLM model judges: the whole text when it fits in `size` characters, and each
    sentence of a text of several (a sentence longer than `size` cut at whitespace).

    Why sentences: the model was trained on prompts of a sentence or three, and mean pooling
    dilutes one harmful sentence among ordinary ones (a 42-character request scored 0.92 alone,
    0.66 after "Thanks for the notes.", 0.13 between two sentences of minutes). More than `most`
    windows: `most` of them, evenly spaced, first and last kept (and the whole text, if judged).
    """
    text = text.strip()
    if not text:
        return []
    pieces = [p for sentence in _SENTENCE_END.split(text) for p in _cut(sentence.strip(), size)]
    whole = [text] if len(text) <= size else []
    if len(pieces) <= 1:
        return whole or pieces
    budget = most - len(whole)
    if budget <= 0:
        return whole
    if len(pieces) > budget:
        step = (len(pieces) - 1) / (budget - 1) if budget > 1 else 0
        pieces = [pieces[round(k * step)] for k in range(budget)]
    return whole + pieces


def _cut(sentence: str, size: int) -> list[str]:
    """A sentence in pieces of at most `size` characters, cut at whitespace where possible."""
    pieces: list[str] = []
    start, n = 0, len(sentence)
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = sentence.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        piece = sentence[start:end].strip()
        if piece:
            pieces.append(piece)
        start = end
    return pieces


def _sigmoid(z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return out.astype(np.float32)


def harm_score(text: str, model: ContentSafetyModel | None = None) -> float:
    """Probability-like score in [0, 1] that the text is a harmful request or content."""
    m = model or load_model()
    z = float(m.weights[sorted_features(text)].sum()) + m.bias
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def category_scores(text: str, model: ContentSafetyModel | None = None) -> dict[str, float]:
    """Each category's one-vs-rest score for a text already judged harmful."""
    m = model or load_model()
    idx = np.array(sorted_features(text), dtype=np.int64) % CATEGORY_DIMENSIONS
    z = m.category_weights[:, idx].sum(axis=1) + m.category_bias
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return {c: float(v) for c, v in zip(CATEGORIES, p, strict=True)}


class ContentSafetyDetector:
    """Flags the whole text, with its categories, when the harm score reaches the threshold.

    `model`: "minilm", "tuned" or "ngram" (see the module docstring); `threshold` overrides the one
    shipped with the model. `categories` narrows what is reported (a text whose categories are
    all outside it passes). On streams, `stream_hold="all"` holds the whole output until it is
    judged whole (nothing of a blocked answer leaves); "window" judges each unreleased window
    as it goes, streaming at the cost of judging pieces (the policy's `hold_back_chars`).
    """

    def __init__(
        self,
        threshold: float | None = None,
        categories: Iterable[str] = CATEGORIES,
        stream_hold: str = "all",
        model: str = "minilm",
        max_windows: int = MAX_WINDOWS,
        static_first: bool = True,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}")
        self.model_name = model
        self.max_windows = max_windows
        self.model = load_model()
        self._minilm = (
            load_model(TUNED_MODEL_PATH if model == "tuned" else MINILM_MODEL_PATH)
            if model != "ngram"
            else None
        )
        shipped = self._minilm.threshold if self._minilm is not None else self.model.threshold
        self.threshold = shipped if threshold is None else threshold
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.categories = frozenset(categories)
        unknown = self.categories - set(CATEGORIES)
        if unknown or not self.categories:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
        if stream_hold not in STREAM_HOLDS:
            raise ValueError(f"stream_hold must be one of {STREAM_HOLDS}")
        if not 1 <= max_windows <= 256:
            raise ValueError("max_windows must be in 1..256")
        self.stream_hold = stream_hold
        # The stream's chunk checks see only a window: with "all" the window is everything,
        # and the verdict that counts is the whole-text one.
        self.judges_whole_text = stream_hold == "all"
        self._embedder = (
            None if model == "ngram" else _embedder(ENCODER_PATH if model == "tuned" else None)
        )
        self._static: StaticPass | None = None
        if model == "minilm" and static_first:  # its bound was chosen for the plain model
            self._static = StaticPass.load()

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if not any(i >= 2 for i, _ in enumerate(_WORD.finditer(text))):
            return []  # fewer than three words: nothing the model can read
        if self._minilm is None:
            score = harm_score(text, self.model)
            if score < self.threshold:
                return []
            by_category = category_scores(text, self.model)
        else:
            score, by_category = self._minilm_scores(text, self._minilm)
            if score < self.threshold:
                return []
        top = max(by_category, key=by_category.__getitem__)
        named = [c for c in CATEGORIES if c == top or by_category[c] >= CATEGORY_MIN_SHARE]
        reported = [c for c in named if c in self.categories]
        return [Finding(f"HARMFUL_{c.upper()}", 0, len(text), round(score, 4)) for c in reported]

    def _minilm_scores(self, text: str, m: ContentSafetyModel) -> tuple[float, dict[str, float]]:
        """The highest window score, and the category scores of that window."""
        from mesh.embeddings.text import embedding_text

        assert self._embedder is not None
        judged = [embedding_text(w) for w in windows(text, most=self.max_windows)]
        if self._static is not None:
            judged = self._static.unclear(judged)
            if not judged:
                return 0.0, {}  # every window clearly harmless: MiniLM never runs
        vectors = self._embedder.embed(judged)
        harm = _sigmoid(vectors @ m.weights + m.bias)
        worst = int(np.argmax(harm))
        by_category = _sigmoid(m.category_weights @ vectors[worst] + m.category_bias)
        return float(harm[worst]), {
            c: float(v) for c, v in zip(CATEGORIES, by_category, strict=True)
        }

    def holdback(self, text: str, system_prompt: str = "") -> int | None:
        """ "all": every character (judged whole before any leaves); "window": cannot say."""
        return len(text) if self.stream_hold == "all" else None


@dataclass(frozen=True)
class StaticPass:
    """A logistic regression over a window's static vector (mean and maximum of its token rows
    in the router's static table, ~0.05 ms): windows scoring under `skip_below` are clearly
    harmless and skip MiniLM. Skipping can only lower a text's score, so it never adds a false
    positive; the bound was chosen out of fold so that at most 1 % of the harmful training rows
    MiniLM catches lose every window it flags (guards/train_content_safety_static.py)."""

    weights: npt.NDArray[np.float32]
    bias: float
    skip_below: float
    embedder: Embedder

    @classmethod
    def load(cls, path: Path = STATIC_MODEL_PATH) -> StaticPass:
        from mesh.embeddings.static import shared_static_embedder

        with np.load(path) as data:
            weights = data["weights"].astype(np.float32)
            bias, skip_below = float(data["bias"][0]), float(data["skip_below"][0])
        embedder = shared_static_embedder("mean+max")
        if weights.shape != (embedder.dim,) or not 0.0 < skip_below < 1.0:
            raise ValueError(f"{path}: not a static content-safety pass")
        embedder.embed(["warm up the static table"])  # distilled at policy load, not per call
        return cls(weights, bias, skip_below, embedder)

    def unclear(self, texts: list[str]) -> list[str]:
        """The texts that still need MiniLM's judgement."""
        scores = _sigmoid(self.embedder.embed(texts) @ self.weights + self.bias)
        return [t for t, s in zip(texts, scores, strict=True) if s >= self.skip_below]


def _embedder(overlay: Path | None = None) -> Embedder:
    """The guards' MiniLM (its own worker beside the router's: a long text's runs never delay
    routing), with the `tuned` model's layers in place if `overlay`, loaded now: a policy that
    uses it is refused at load time if the model is missing, and the first request does not
    pay the load (nor the one-off conversion of the tuned graph, ~5 s)."""
    from mesh.embeddings.batching import shared_embedder
    from mesh.embeddings.minilm_assets import EmbeddingModelMissing

    embedder = shared_embedder(EMBEDDING_PRECISION, pool="guards", overlay=overlay)
    try:
        embedder.embed(["warm up the content safety model"])
    except EmbeddingModelMissing as exc:
        raise ValueError(f"models 'minilm' and 'tuned' need the embedding model: {exc}") from None
    return embedder
