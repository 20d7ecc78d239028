"""The learned tier model: what it reads from a request and how it turns that into probabilities.

Shared by the router (mesh/router/tier_estimator.py, inference) and the trainer
(mesh/router/train_estimator.py), so a request is featurised exactly as the training rows were.
Inference is numpy only: [MiniLM embedding, structural features] through one ReLU layer (or
none: a plain softmax regression, as the structure-only model is) and a softmax. Nothing here
imports torch or reads more than FEATURE_CHARS of a task.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mesh.embeddings.text import embedding_text
from mesh.router.tier_estimate import TIERS

FEATURE_CHARS = 8000  # the structural features read at most this much of a task (head + tail)

F64 = npt.NDArray[np.float64]

_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|function |const |let |var |public |private |"
    r"#include|SELECT |fn |func |package |return\b|if .*[:{]\s*$|for .*[:{]\s*$|\}|@\w+)"
    r"|[;{]\s*$|=>|->|::",
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH_SYMBOL = re.compile(r"[=+*/^<>\\$]|\\frac|\\sum|\\int")
_PARAGRAPH = re.compile(r"\n\s*\n")

# Structural features: generic shape of the text, no topic words (the embedding carries meaning).
STRUCT_NAMES = (
    "length",  # log characters of the task
    "turns",  # log messages in the conversation
    "code_lines",  # share of lines that look like code
    "code_fence",  # a ``` block is present
    "numbers",  # log count of numbers
    "digit_share",  # digits per character
    "math_symbols",  # maths symbols per character (x100)
    "non_ascii",  # share of letters outside ASCII (another language or script)
    "questions",  # log count of question marks
    "ask_share",  # the last paragraph's share of the text: a short ask after a long passage
    "paragraphs",  # log count of paragraphs
    "lower_case",  # share of letters in lower case (hurried typing)
)
# What each feature means in a reason line, by the direction it pushed.
STRUCT_WORDS = {
    "length": ("long input", "short input"),
    "turns": ("long conversation", "single turn"),
    "code_lines": ("code in the text", "no code"),
    "code_fence": ("a code block", "no code block"),
    "numbers": ("many numbers", "few numbers"),
    "digit_share": ("dense digits", "few digits"),
    "math_symbols": ("maths notation", "no maths notation"),
    "non_ascii": ("non-English script", "English text"),
    "questions": ("several questions", "no question mark"),
    "ask_share": ("the ask is most of the text", "a short ask after a long passage"),
    "paragraphs": ("many paragraphs", "one paragraph"),
    "lower_case": ("lower-case typing", "capitalised text"),
}


def bounded(task: str) -> str:
    """At most FEATURE_CHARS of a task: its head and tail, where the ask and the data sit."""
    if len(task) <= FEATURE_CHARS:
        return task
    half = FEATURE_CHARS // 2
    return task[:half] + "\n" + task[-half:]


def structural(task: str, turns: int) -> F64:
    """The STRUCT_NAMES vector for one task (raw, before the model's standardisation)."""
    full_chars = len(task)
    text = bounded(task)
    chars = max(len(text), 1)
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    letters = [c for c in text if c.isalpha()] or ["a"]
    paragraphs = [p for p in _PARAGRAPH.split(text.strip()) if p.strip()] or [text]
    return np.array(
        [
            math.log1p(full_chars),
            math.log1p(max(turns, 1)),
            sum(1 for line in lines if _CODE_LINE.search(line)) / len(lines),
            1.0 if "```" in text else 0.0,
            math.log1p(len(_NUMBER.findall(text))),
            sum(c.isdigit() for c in text) / chars,
            100.0 * len(_MATH_SYMBOL.findall(text)) / chars,
            sum(1 for c in letters if ord(c) > 127) / len(letters),
            math.log1p(text.count("?")),
            len(paragraphs[-1]) / chars,
            math.log1p(len(paragraphs)),
            sum(1 for c in letters if c.islower()) / len(letters),
        ],
        dtype=np.float64,
    )


def model_text(task: str) -> str:
    """The text the embedding is taken of: the same string the semantic cache embeds (bounded:
    embedding_text reads only the task's tail)."""
    return embedding_text(task)


@dataclass(frozen=True)
class TierModel:
    """[embedding, standardised structure] -> P(tier); plus evidence for reasons.

    With `hidden_weights` (hidden, dim + structure) and `hidden_bias`, the input goes through
    one ReLU layer first and `weights` is (classes, hidden); without, `weights` is (classes,
    dim + structure): a softmax regression. `bias` is (classes,). `kind_centroids` are the mean
    embeddings of the training rows of each kind (unit length), so a reason can name the kinds
    of training task a request is closest to.
    """

    weights: F64
    bias: F64
    struct_mean: F64
    struct_std: F64
    kind_names: tuple[str, ...]
    kind_tiers: tuple[str, ...]
    kind_centroids: F64
    meta: dict[str, object]
    hidden_weights: F64 | None = None
    hidden_bias: F64 | None = None

    @property
    def width(self) -> int:
        """Inputs the model reads: embedding dimensions plus structural features."""
        first = self.weights if self.hidden_weights is None else self.hidden_weights
        return int(first.shape[1])

    @property
    def dim(self) -> int:
        return self.width - len(STRUCT_NAMES)

    def inputs(self, embedding: npt.NDArray[np.floating], struct: F64) -> F64:
        z = (struct - self.struct_mean) / self.struct_std
        return np.concatenate([embedding.astype(np.float64), z])

    def probabilities(self, x: F64) -> F64:
        """P(tier) for one input row (`inputs`)."""
        out: F64 = self.batch_probabilities(x[None, :])[0]
        return out

    def batch_probabilities(self, xs: F64) -> F64:
        """P(tier) for each row of `xs` (rows x width)."""
        h = xs
        if self.hidden_weights is not None and self.hidden_bias is not None:
            h = np.maximum(xs @ self.hidden_weights.T + self.hidden_bias, 0.0)
        logits = h @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out: F64 = p / p.sum(axis=1, keepdims=True)
        return out

    def _gradient(self, x: F64, upper: int, lower: int) -> F64:
        """d(log p(upper) - log p(lower)) / dx at x: the weight difference for the softmax
        regression, that difference through the active ReLU units with a hidden layer."""
        diff: F64 = self.weights[upper] - self.weights[lower]
        if self.hidden_weights is None or self.hidden_bias is None:
            return diff
        active = (self.hidden_weights @ x + self.hidden_bias) > 0
        out: F64 = (diff * active) @ self.hidden_weights
        return out

    def pushes(self, x: F64, upper: int, lower: int) -> tuple[float, F64]:
        """The embedding's and each structural feature's push on log p(upper) - log p(lower):
        gradient x input (one gradient for both), which for the softmax regression is exactly
        each part's term."""
        grad = self._gradient(x, upper, lower)
        struct: F64 = grad[self.dim :] * x[self.dim :]
        return float(grad[: self.dim] @ x[: self.dim]), struct

    def struct_contributions(self, x: F64, upper: int, lower: int) -> F64:
        return self.pushes(x, upper, lower)[1]

    def embedding_contribution(self, x: F64, upper: int, lower: int) -> float:
        return self.pushes(x, upper, lower)[0]

    def nearest_kinds(
        self, embedding: npt.NDArray[np.floating], k: int = 2
    ) -> list[tuple[str, float]]:
        # A cosine: the static model's mean+max vectors have norm sqrt(2), not 1.
        vector = embedding.astype(np.float64)
        sims = self.kind_centroids @ (vector / (np.linalg.norm(vector) or 1.0))
        top = np.argsort(-sims, kind="stable")[:k]
        return [(self.kind_names[int(i)], float(sims[int(i)])) for i in top]

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: Path) -> str:
        """Write the npz; returns the sha256 of its arrays (also stored inside, checked on load)."""
        arrays = self._arrays()
        digest = _digest(arrays)
        meta = {**self.meta, "sha256": digest}
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        with path.open("wb") as fh:
            np.savez_compressed(fh, allow_pickle=False, **arrays)
        return digest

    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        layer: dict[str, npt.NDArray[np.generic]] = {}
        if self.hidden_weights is not None and self.hidden_bias is not None:
            layer["hidden_weights"] = self.hidden_weights.astype(np.float32)
            layer["hidden_bias"] = self.hidden_bias.astype(np.float32)
        return {
            **layer,
            "weights": self.weights.astype(np.float32),
            "bias": self.bias.astype(np.float32),
            "struct_mean": self.struct_mean.astype(np.float32),
            "struct_std": self.struct_std.astype(np.float32),
            "kind_names": np.array(self.kind_names),
            "kind_tiers": np.array(self.kind_tiers),
            "kind_centroids": self.kind_centroids.astype(np.float16),
            "struct_names": np.array(STRUCT_NAMES),
            "tiers": np.array(TIERS),
        }

    @classmethod
    def load(cls, path: Path) -> TierModel:
        """Read and check a saved model: the arrays must hash to the digest written with them."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files if k != "meta"}
                meta = json.loads(str(data["meta"]))
            names, tiers = arrays["struct_names"], arrays["tiers"]
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            # numpy's own words for a file that is not an npz ("pickled data") name no file
            raise ValueError(f"{path}: not a tier model file ({type(exc).__name__})") from exc
        if tuple(str(s) for s in names) != STRUCT_NAMES:
            raise ValueError(f"{path}: structural features differ from this version's")
        if tuple(str(s) for s in tiers) != TIERS:
            raise ValueError(f"{path}: tiers differ from {TIERS}")
        if _digest(arrays) != meta.get("sha256"):
            raise ValueError(f"{path}: weights do not match their recorded sha256 (corrupt?)")
        weights = arrays["weights"].astype(np.float64)
        hidden_w = hidden_b = None
        if "hidden_weights" in arrays or "hidden_bias" in arrays:
            if "hidden_weights" not in arrays or "hidden_bias" not in arrays:
                raise ValueError(f"{path}: a hidden layer needs both its weights and its bias")
            hidden_w = arrays["hidden_weights"].astype(np.float64)
            hidden_b = arrays["hidden_bias"].astype(np.float64)
            if hidden_b.shape != (hidden_w.shape[0],) or weights.shape[1:] != hidden_b.shape:
                raise ValueError(f"{path}: hidden layer of shape {hidden_w.shape}")
        width = (weights if hidden_w is None else hidden_w).shape[1]
        if weights.shape[0] != len(TIERS) or width < len(STRUCT_NAMES):
            raise ValueError(f"{path}: weights of shape {weights.shape}")
        return cls(
            weights=weights,
            bias=arrays["bias"].astype(np.float64),
            struct_mean=arrays["struct_mean"].astype(np.float64),
            struct_std=arrays["struct_std"].astype(np.float64),
            kind_names=tuple(str(s) for s in arrays["kind_names"]),
            kind_tiers=tuple(str(s) for s in arrays["kind_tiers"]),
            kind_centroids=arrays["kind_centroids"].astype(np.float64),
            meta=meta,
            hidden_weights=hidden_w,
            hidden_bias=hidden_b,
        )


def _digest(arrays: dict[str, npt.NDArray[np.generic]]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
